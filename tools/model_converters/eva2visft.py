"""Convert an EVA checkpoint to an EVAViT state dict.

Accepts LAVIS ``eva_vit_g.pth``, full EVA-CLIP checkpoints, the official
ViSFT visual file, visft_mm / mmengine model checkpoints and LAVIS BLIP-2
models; the output loads with
``init_cfg=dict(type='Pretrained', checkpoint=DST)``. It records the arch in
its meta, ``post_norm`` included: as the source records it, else as
``--post-norm`` / ``--pre-norm`` say, else inferred from the width (only
EVA-ViT-E, 1792 wide, is post-norm).

Example::

    python tools/model_converters/eva2visft.py \\
        EVA02_CLIP_E_psz14_plus_s9B.pt eva_e_base.pth
"""
import argparse
import sys

from visft_mm.checkpoints.eva_layouts import (load_backbone,
                                              missing_norm_warning,
                                              save_backbone)
from visft_mm.utils.cli import exit_on_bad_input

DESCRIPTION = ('Convert an EVA checkpoint (LAVIS, EVA-CLIP, ViSFT, visft_mm, '
               'BLIP-2) to an EVAViT state dict')


def parse_args():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument('src', help='source checkpoint')
    parser.add_argument('dst', help='output EVAViT state dict')
    cls_group = parser.add_mutually_exclusive_group()
    cls_group.add_argument(
        '--keep-cls-token',
        dest='keep_cls_token',
        action='store_true',
        default=True,
        help='keep cls_token when the source has one '
        '(default; EVAViT needs it with with_cls_token=True)')
    cls_group.add_argument(
        '--drop-cls-token',
        dest='keep_cls_token',
        action='store_false',
        help='leave cls_token out (ViSFT trains without it)')
    norm_group = parser.add_mutually_exclusive_group()
    norm_group.add_argument(
        '--post-norm',
        dest='post_norm',
        action='store_true',
        default=None,
        help='the blocks are post-norm (EVA-ViT-E), for a source that does '
        'not record it and whose width does not tell')
    norm_group.add_argument(
        '--pre-norm',
        dest='post_norm',
        action='store_false',
        help='the blocks are pre-norm')
    return parser.parse_args()


def convert(args) -> None:
    backbone = load_backbone(args.src)
    converted = backbone.converted
    state_dict = dict(backbone.state_dict)
    if 'cls_token' not in state_dict:
        cls_status = 'absent from the source'
    elif args.keep_cls_token:
        cls_status = 'kept'
    else:
        del state_dict['cls_token']
        cls_status = 'dropped (--drop-cls-token)'
    arch = converted.arch_record()
    if converted.post_norm is not None:
        norm_status = 'as the source records'
        if args.post_norm not in (None, converted.post_norm):
            raise ValueError(
                f'{args.src} records post_norm={converted.post_norm}, '
                'which contradicts --post-norm/--pre-norm')
    elif args.post_norm is not None:
        norm_status = '--post-norm' if args.post_norm else '--pre-norm'
        arch['post_norm'] = args.post_norm
    else:
        norm_status = 'inferred from the width'

    save_backbone(state_dict, arch, args.dst)

    prefix = (f" (vision tower under '{converted.prefix}')"
              if converted.prefix else '')
    print(f'layout:    {converted.layout}{prefix}')
    print(f'kept:      {len(state_dict)} tensors (embed_dims '
          f'{arch["embed_dims"]}, {arch["num_layers"]} blocks, '
          f'feedforward_channels {arch["feedforward_channels"]})')
    print(f'post_norm: {arch["post_norm"]} ({norm_status})')
    print(f'cls_token: {cls_status}')
    print(f'dropped:   {", ".join(converted.dropped_groups()) or "nothing"}')
    print(f'saved:     {args.dst} (its arch in the meta)')
    if converted.missing:
        print(
            missing_norm_warning(args.src, converted.missing), file=sys.stderr)


def main():
    args = parse_args()
    with exit_on_bad_input():
        convert(args)


if __name__ == '__main__':
    main()
