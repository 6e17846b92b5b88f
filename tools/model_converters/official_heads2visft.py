"""Convert the released ViSFT stage-1 heads to one checkpoint of ViSFT task
models.

Takes any of ``eva_{g,e}_{detection,segment,caption}_heads.ckpt`` (Hugging
Face ``TencentARC/ViSFT``). Each file holds every head but trained only its
own: keys with ``segment`` come from the segment file, keys with ``caption``
from the caption file, all others from the detection file, as the official
stage-2 loader takes them. The output holds ``tasks.<task>.*``, which the
``*_stage2_official-heads.py`` configs load strictly through
``task_checkpoints``; it prints what came from where, every key it left out
and why, and whether the heads are EVA-ViT-G's or EVA-ViT-E's.

Example::

    python tools/model_converters/official_heads2visft.py \\
        --detection checkpoints/eva_g_detection_heads.ckpt \\
        --segment checkpoints/eva_g_segment_heads.ckpt \\
        --caption checkpoints/eva_g_caption_heads.ckpt \\
        checkpoints/visft_official_heads_eva_g.pth
"""
import argparse

from visft_mm.checkpoints.io import save_atomic
from visft_mm.checkpoints.official_heads import (BACKBONE_ARCHS,
                                                 RELEASED_FILE_TASKS,
                                                 convert_released_heads)
from visft_mm.utils.cli import exit_on_bad_input

DESCRIPTION = ('Convert released ViSFT stage-1 heads to one checkpoint of '
               'ViSFT task models')


def parse_args():
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    for word, task in RELEASED_FILE_TASKS.items():
        parser.add_argument(
            f'--{word}',
            metavar='FILE',
            help=f'eva_{{g,e}}_{word}_heads.ckpt: the {task} head')
    parser.add_argument('out', help='output checkpoint (tasks.<task>.*)')
    args = parser.parse_args()
    if not any(getattr(args, word) for word in RELEASED_FILE_TASKS):
        parser.error('give at least one of ' +
                     ', '.join(f'--{word}' for word in RELEASED_FILE_TASKS))
    return args


def main():
    args = parse_args()
    files = {
        task: getattr(args, word)
        for word, task in RELEASED_FILE_TASKS.items() if getattr(args, word)
    }
    with exit_on_bad_input():
        heads = convert_released_heads(files)
        save_atomic(heads.checkpoint(), args.out)
    print('\n'.join(heads.report))
    arch = heads.backbone_arch or ('none released '
                                   f'({BACKBONE_ARCHS})')
    print(f'backbone: ViT width {heads.vit_width}, arch {arch}')
    print(f'saved: {args.out} ({len(heads.state_dict)} tensors of tasks '
          f'{", ".join(heads.sources)})')


if __name__ == '__main__':
    main()
