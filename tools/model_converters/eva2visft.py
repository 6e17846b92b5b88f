"""Convert an EVA checkpoint to a plain EVAViT state dict.

Accepts LAVIS ``eva_vit_g.pth``, full EVA-CLIP checkpoints, the official
ViSFT visual file, visft_mm / mmengine model checkpoints and LAVIS BLIP-2
models; the output loads with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

Example::

    python tools/model_converters/eva2visft.py \\
        EVA02_CLIP_E_psz14_plus_s9B.pt eva_e_visual.pth
"""
import argparse
import sys

from visft_mm.checkpoints.eva_layouts import (NORM_DEFAULT_INIT_NOTE,
                                              load_backbone)
from visft_mm.checkpoints.io import save_atomic
from visft_mm.utils.cli import exit_on_bad_input


def parse_args():
    parser = argparse.ArgumentParser(
        description=
        'Convert an EVA checkpoint (LAVIS, EVA-CLIP, ViSFT, visft_mm, BLIP-2) '
        'to an EVAViT state dict')
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
    return parser.parse_args()


def print_missing_norm_warning(src: str, missing_norm) -> None:
    rule = 'WARNING ' + '=' * 70
    print(
        '\n'.join([
            rule,
            f'WARNING: {src} has no final LayerNorm ({", ".join(missing_norm)});',
            f'WARNING: {NORM_DEFAULT_INIT_NOTE}.', rule
        ]),
        file=sys.stderr)


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

    save_atomic(state_dict, args.dst)

    arch = converted.arch
    prefix = f" (vision tower under '{converted.prefix}')" if converted.prefix else ''
    print(f'layout:    {converted.layout}{prefix}')
    print(
        f'kept:      {len(state_dict)} tensors (embed_dims {arch["embed_dims"]}, '
        f'{arch["num_layers"]} blocks, feedforward_channels {arch["feedforward_channels"]})'
    )
    print(f'cls_token: {cls_status}')
    print(f'dropped:   {", ".join(converted.dropped_groups()) or "nothing"}')
    print(f'saved:     {args.dst}')
    if converted.missing:
        print_missing_norm_warning(args.src, converted.missing)


def main():
    args = parse_args()
    with exit_on_bad_input():
        convert(args)


if __name__ == '__main__':
    main()
