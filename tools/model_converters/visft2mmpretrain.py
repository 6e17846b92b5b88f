"""Export a ViSFT-tuned EVA-ViT-G as the ``BEiTViT`` of mmpretrain's BLIP-2.

The ``mmpretrain::blip2/*`` configs build ``BEiTViT`` with EVA-ViT-G's first 39
layers, a cls token, an absolute position table and no final norm
(``final_norm=False``; BLIP-2 adds ``ln_vision_backbone``). The output holds
those keys (``layers.i.ln1``, ``layers.i.attn.qkv``,
``layers.i.ffn.layers.0.0``, ``patch_embed.projection``, ...) for layers 0-38
only: **the LoRA of block 39
has no effect there**. When BACKBONE has no cls token, ``--cls-token-from``
names the checkpoint to take it from.

Note: the blip2-opt configs also set ``out_indices=-2``, so their BLIP-2 reads
the output of layer 37 and layer 38's LoRA has no effect either.

Load it with ``mmengine.runner.load_checkpoint(model.vision_backbone, OUT)``
after the BLIP-2 weights, or as ``vision_backbone.init_cfg``
``dict(type='Pretrained', checkpoint=OUT)`` when no full checkpoint follows.

Example::

    python tools/model_converters/visft2mmpretrain.py \\
        eva_vit_g.pth blip2_beit_visft.pth --lora eva_g_lora_5000.pt
"""
import argparse

from visft_mm.checkpoints.eva_layouts import load_backbone
from visft_mm.checkpoints.exports import (BLIP2_NUM_BLOCKS,
                                          export_mmpretrain_beit,
                                          load_cls_token)
from visft_mm.checkpoints.io import save_atomic
from visft_mm.utils.cli import (add_backbone_export_arguments,
                                add_cls_token_argument, exit_on_bad_input,
                                print_export_report)

DESCRIPTION = ("Export an EVA-ViT-G backbone as mmpretrain's BLIP-2 BEiTViT "
               '(39 layers, no final norm)')


def parse_args():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_backbone_export_arguments(parser, 'output BEiTViT state dict')
    add_cls_token_argument(parser)
    parser.add_argument(
        '--num-layers',
        type=int,
        default=BLIP2_NUM_BLOCKS,
        help=f'layers to keep (default {BLIP2_NUM_BLOCKS}, the num_layers of '
        'the blip2 configs)')
    return parser.parse_args()


def export(args) -> None:
    backbone = load_backbone(args.backbone, args.lora, args.alpha)
    cls_token = load_cls_token(
        args.cls_token_from) if args.cls_token_from else None
    result = export_mmpretrain_beit(backbone.state_dict, args.num_layers,
                                    cls_token, backbone.post_norm)
    save_atomic(result.state_dict, args.out)
    print_export_report(
        backbone,
        result.notes,
        f'{args.out} (mmpretrain BEiTViT, {args.num_layers} layers, '
        'final_norm=False)',
        cls_token_from=args.cls_token_from or '')


def main():
    args = parse_args()
    with exit_on_bad_input():
        export(args)


if __name__ == '__main__':
    main()
