"""Export a ViSFT-tuned EVA-ViT-G as the ``visual_encoder`` of LAVIS BLIP-2.

LAVIS's ``create_eva_vit_g`` builds EVA-ViT-G with 39 of its 40 blocks and no
final LayerNorm (BLIP-2 normalises with its own ``ln_vision``), so the output
holds ``visual_encoder.{cls_token, pos_embed, patch_embed.proj.*,
blocks.0-38.*}`` only: **the LoRA of block 39 (the 40th) has no effect in
BLIP-2**. ViSFT trains without a cls token; when BACKBONE has none,
``--cls-token-from`` names the checkpoint to take it from (``eva_vit_g.pth``,
EVA-CLIP or BLIP-2).

Load the output into a built BLIP-2 model with LAVIS's
``model.load_checkpoint(OUT)`` (non-strict: only ``visual_encoder.*`` changes).
For a model built for 364-pixel inputs (LAVIS's captioning and VQA BLIP-2),
pass ``--img-size 364`` so that the position table fits.

Example::

    python tools/model_converters/visft2lavis.py \\
        eva_vit_g.pth blip2_visual_encoder_visft.pth --lora eva_g_lora_5000.pt
"""
import argparse

from visft_mm.checkpoints.eva_layouts import load_backbone
from visft_mm.checkpoints.exports import (BLIP2_NUM_BLOCKS, export_lavis,
                                          load_cls_token)
from visft_mm.checkpoints.io import save_atomic
from visft_mm.utils.cli import (add_backbone_export_arguments,
                                add_cls_token_argument, exit_on_bad_input,
                                print_export_report)

DESCRIPTION = ('Export an EVA-ViT-G backbone as a LAVIS BLIP-2 visual_encoder '
               '(39 blocks, no final norm)')


def parse_args():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_backbone_export_arguments(parser,
                                  'output state dict (visual_encoder.* keys)')
    add_cls_token_argument(parser)
    parser.add_argument(
        '--img-size',
        type=int,
        help='input size of the BLIP-2 model to load it into (364 for LAVIS '
        'captioning and VQA models): resizes the position table')
    parser.add_argument(
        '--num-blocks',
        type=int,
        default=BLIP2_NUM_BLOCKS,
        help=f'blocks to keep (default {BLIP2_NUM_BLOCKS}, what LAVIS builds)')
    return parser.parse_args()


def export(args) -> None:
    backbone = load_backbone(args.backbone, args.lora, args.alpha)
    cls_token = load_cls_token(
        args.cls_token_from) if args.cls_token_from else None
    result = export_lavis(backbone.state_dict, args.num_blocks, cls_token,
                          args.img_size, backbone.post_norm)
    save_atomic(result.state_dict, args.out)
    print_export_report(
        backbone,
        result.notes,
        f'{args.out} (LAVIS BLIP-2 visual_encoder, {args.num_blocks} blocks)',
        cls_token_from=args.cls_token_from or '')


def main():
    args = parse_args()
    with exit_on_bad_input():
        export(args)


if __name__ == '__main__':
    main()
