"""Merge a LoRA file into an EVA backbone, or export a LoRA file in the
official ViSFT layout.

The backbone may be in any layout ``eva2visft.py`` accepts. The LoRA file may
be visft_mm's format or a stage-2 run checkpoint, which store rank, alpha and
slices (``--alpha`` may only repeat the stored alpha), or the official layout
(``eva_{g,e}_lora_*.pt``: rank from the shapes, q and v, alpha 1 unless
``--alpha`` says otherwise; run checkpoints saved without their LoRA settings
read the same way). The output holds an EVAViT state dict with
``W + alpha / rank * B @ A`` on the adapted slices, and the backbone's arch
(``post_norm`` in: as the backbone file records it, else inferred from the
width) in its meta.

Examples::

    python tools/model_converters/merge_lora.py \\
        eva_vit_g.pth eva_g_lora_5000.pt eva_g_visft.pth
    python tools/model_converters/merge_lora.py \\
        --export-official lora.pth eva_g_lora_official.pt
"""
import argparse
import sys

from visft_mm.checkpoints.eva_layouts import (load_backbone,
                                              missing_norm_warning,
                                              save_backbone)
from visft_mm.checkpoints.io import save_atomic
from visft_mm.checkpoints.lora_files import (describe_lora, load_lora,
                                             to_official_layout)
from visft_mm.utils.cli import exit_on_bad_input

DESCRIPTION = ('Merge LoRA weights into an EVA backbone, or export them in '
               'the official ViSFT layout')


def parse_args():
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        usage='%(prog)s BACKBONE_CKPT LORA_FILE OUT [--alpha A]\n'
        '       %(prog)s --export-official LORA_FILE OUT')
    parser.add_argument(
        'paths',
        nargs='+',
        metavar='PATH',
        help='BACKBONE_CKPT LORA_FILE OUT, or LORA_FILE OUT with '
        '--export-official')
    parser.add_argument(
        '--alpha',
        type=float,
        default=None,
        help='LoRA alpha of a file that does not store it (official layout; '
        'default 1); scaling is alpha / rank')
    parser.add_argument(
        '--export-official',
        action='store_true',
        help='write LORA_FILE in the official ViSFT layout instead of merging')
    args = parser.parse_args()
    if args.export_official:
        if len(args.paths) != 2:
            parser.error('--export-official takes LORA_FILE OUT')
        if args.alpha is not None:
            parser.error('--alpha does not apply to --export-official')
    elif len(args.paths) != 3:
        parser.error('expected BACKBONE_CKPT LORA_FILE OUT')
    return args


def export_official(lora_path: str, out: str) -> None:
    weights = load_lora(lora_path)
    save_atomic(to_official_layout(weights), out)
    print(f'lora:  {describe_lora(weights)}')
    print(f'saved: {out} (official ViSFT layout)')


def merge(backbone_path: str, lora_path: str, out: str, alpha) -> None:
    backbone = load_backbone(backbone_path, lora_path, alpha)
    converted, merged = backbone.converted, backbone.state_dict
    save_backbone(merged, converted.arch_record(), out)
    print(f'backbone: {converted.layout} layout, {len(merged)} tensors')
    print(f'dropped:  {", ".join(converted.dropped_groups()) or "nothing"}')
    print(f'lora:     {describe_lora(backbone.lora)}')
    print(f'saved:    {out} (EVAViT state dict with LoRA merged, its arch '
          'in the meta)')
    if converted.missing:
        print(
            missing_norm_warning(backbone_path, converted.missing),
            file=sys.stderr)


def main():
    args = parse_args()
    with exit_on_bad_input():
        if args.export_official:
            export_official(*args.paths)
        else:
            merge(*args.paths, alpha=args.alpha)


if __name__ == '__main__':
    main()
