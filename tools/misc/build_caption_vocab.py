"""Build the caption head's word map (the official flat WORDMAP json) from
captions.

    python tools/misc/build_caption_vocab.py \\
        data/coco/annotations/captions_train2017.json \\
        data/coco/annotations/WORDMAP_coco.json --min-word-freq 5
    python tools/misc/build_caption_vocab.py --official \\
        data/coco/annotations/dataset_coco.json \\
        data/coco/annotations/WORDMAP_coco_5_cap_per_img_5_min_word_freq.json

Reads a COCO captions json (all its captions) or Karpathy's dataset_coco.json
(train + restval), splits the captions into words and gives ids to the words
seen more than --min-word-freq times.

--official reproduces the official map (9490 entries on dataset_coco.json),
which the released caption heads need: it counts the pre-tokenised `tokens`
of every sentence of every image in file order, in every Karpathy split
(train, restval, val and test alike), as the official create_input_files does.
"""
import argparse
import sys
from typing import List

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
    parser.add_argument(
        '--official',
        action='store_true',
        help='the official map: the `tokens` of every sentence of a '
        'Karpathy dataset_coco.json, all splits')
    return parser.parse_args()


def karpathy_token_lists(path: str, data: dict) -> List[List[str]]:
    """The ``tokens`` of every sentence of every image of a Karpathy json, in
    file order, whatever the split."""
    token_lists = []
    try:
        for image in data['images']:
            for sentence in image['sentences']:
                tokens = sentence['tokens']
                if not (isinstance(tokens, list)
                        and all(isinstance(t, str) for t in tokens)):
                    raise TypeError(
                        f'tokens of image {image.get("cocoid")} are not a '
                        'list of strings')
                token_lists.append(tokens)
    except (KeyError, TypeError) as exc:
        raise ValueError(f'caption annotation file {path} is malformed: '
                         f'{type(exc).__name__} {exc}') from None
    return token_lists


def main() -> None:
    args = parse_args()
    try:
        layout, data = read_caption_json(args.captions_json)
        if args.official:
            if layout != KARPATHY_LAYOUT:
                raise ValueError(
                    f'--official reads Karpathy\'s dataset_coco.json; '
                    f'{args.captions_json} is a COCO captions json')
            token_lists = karpathy_token_lists(args.captions_json, data)
            vocab = WordVocabulary.build_from_tokens(token_lists,
                                                     args.min_word_freq)
            source = f'{len(token_lists)} captions'
        else:
            split = 'train' if layout == KARPATHY_LAYOUT else None
            images = parse_caption_images(args.captions_json, layout, data,
                                          split)
            vocab = WordVocabulary.build(
                (caption for image in images for caption in image.captions),
                args.min_word_freq)
            source = f'{len(images)} images'
        vocab.save(args.out_json)
    except (OSError, ValueError) as exc:
        sys.exit(f'error: {exc}')
    print(f'{len(vocab)} entries from {source} -> {args.out_json}')


if __name__ == '__main__':
    main()
