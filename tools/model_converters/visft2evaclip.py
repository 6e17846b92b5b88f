"""Write a ViSFT-tuned EVA backbone into an original EVA-CLIP checkpoint.

The output is the EVA-CLIP checkpoint (``visual.*``, ``text.*``,
``logit_scale``) with the visual trunk (``patch_embed``, ``blocks``, ``norm``)
taken from BACKBONE, the LoRA file merged first when given. The cls token,
position table and projection head ``visual.head`` stay the CLIP
checkpoint's, so the file is a drop-in for EVA-CLIP (and for timm / open_clip,
whose ``checkpoint_filter_fn`` reads this ``visual.*`` layout).

Example::

    python tools/model_converters/visft2evaclip.py \\
        eva_g_visft.pth eva01_g_visft_clip.pt \\
        --clip-checkpoint EVA01_CLIP_g_14_psz14_s11B.pt
    python tools/model_converters/visft2evaclip.py \\
        eva_e_base.pth eva02_e_visft_clip.pt \\
        --clip-checkpoint EVA02_CLIP_E_psz14_plus_s9B.pt \\
        --lora eva_e_lora_5000.pt
"""
import argparse

from visft_mm.checkpoints.eva_layouts import load_backbone
from visft_mm.checkpoints.exports import export_eva_clip
from visft_mm.checkpoints.io import load_model_state_dict, save_atomic
from visft_mm.utils.cli import (add_backbone_export_arguments,
                                exit_on_bad_input, print_export_report)

DESCRIPTION = ('Replace the visual trunk of an EVA-CLIP checkpoint with a '
               'ViSFT backbone')


def parse_args():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_backbone_export_arguments(parser, 'output EVA-CLIP checkpoint')
    parser.add_argument(
        '--clip-checkpoint',
        required=True,
        help='the original EVA-CLIP checkpoint the backbone came from')
    return parser.parse_args()


def export(args) -> None:
    backbone = load_backbone(args.backbone, args.lora, args.alpha)
    clip_sd = load_model_state_dict(args.clip_checkpoint)
    result = export_eva_clip(
        backbone.state_dict, clip_sd, source=args.clip_checkpoint)
    save_atomic(result.state_dict, args.out)
    print_export_report(
        backbone, result.notes,
        f'{args.out} (EVA-CLIP checkpoint, {len(result.state_dict)} tensors)')


def main():
    args = parse_args()
    with exit_on_bad_input():
        export(args)


if __name__ == '__main__':
    main()
