"""Build the caption head's word map (the official flat WORDMAP json) from
captions.

    python tools/misc/build_caption_vocab.py \\
        data/coco/annotations/captions_train2017.json \\
        data/coco/annotations/WORDMAP_coco.json --min-word-freq 5

Reads a COCO captions json (all its captions) or Karpathy's dataset_coco.json
(train + restval); words seen more than --min-word-freq times get ids. The
official map (9490 entries) counts the pre-tokenised captions of every Karpathy
split, so this one differs from it: official checkpoints need the official
file.
"""
import argparse
import sys

from visft_mm.datasets import WordVocabulary
from visft_mm.datasets.coco_caption import (KARPATHY_LAYOUT,
                                            parse_caption_images,
                                            read_caption_json)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'captions_json',
        help='COCO captions_*.json or Karpathy dataset_coco.json')
    parser.add_argument('out_json', help='word map to write, {word: id}')
    parser.add_argument(
        '--min-word-freq',
        type=int,
        default=5,
        help='keep words seen more than this many times (official: 5)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        layout, data = read_caption_json(args.captions_json)
        split = 'train' if layout == KARPATHY_LAYOUT else None
        images = parse_caption_images(args.captions_json, layout, data, split)
        vocab = WordVocabulary.build(
            (caption for image in images for caption in image.captions),
            args.min_word_freq)
        vocab.save(args.out_json)
    except (OSError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    print(f'{len(vocab)} entries from {len(images)} images -> {args.out_json}')


if __name__ == '__main__':
    main()
