"""Write a k-shot-per-class annotation file for the few-shot linear probe.

    python tools/misc/make_fewshot_split.py data/imagenet --shots 16 --seed 0

reads data/imagenet/train (class folders, or meta/train.txt if present) and
writes data/imagenet/meta/train_16shot_seed0.txt, the file
configs/visft/eval/eva_*_probe_linear-cls-16shot_*.py read. Same arguments and
files, same output.
"""
import argparse

from visft_mm.benchmarks.fewshot import write_fewshot_split


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='dataset root, e.g. data/imagenet')
    parser.add_argument(
        '--shots', type=int, required=True, help='images per class (k)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the draw')
    parser.add_argument(
        '--split', default='train', help='image folder under data_root')
    parser.add_argument(
        '--ann-file',
        help='source annotation file relative to data_root '
        '(default: meta/<split>.txt if it exists, else the class folders)')
    parser.add_argument(
        '--out',
        help='output file relative to data_root '
        '(default: meta/<split>_<shots>shot_seed<seed>.txt)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        path = write_fewshot_split(
            args.data_root,
            args.shots,
            seed=args.seed,
            split=args.split,
            ann_file=args.ann_file,
            out=args.out)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}')
    print(f'{args.shots} images per class -> {path}')


if __name__ == '__main__':
    main()
