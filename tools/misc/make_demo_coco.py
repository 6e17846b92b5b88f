"""Write the demo COCO-style shapes dataset (see visft_mm.demo.demo_coco).

    python tools/misc/make_demo_coco.py data/demo_coco

Same arguments, byte-identical files.
"""
import argparse

from visft_mm.demo.demo_coco import BACKGROUNDS, generate_demo_coco


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'out_dir', help='dataset root; gets train/, val/ and annotations/')
    parser.add_argument(
        '--num-train', type=int, default=400, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=100, help='validation images')
    parser.add_argument(
        '--img-size', type=int, default=112, help='side of the square images')
    parser.add_argument(
        '--seed', type=int, default=0, help='non-negative random seed')
    parser.add_argument(
        '--max-objects', type=int, default=3, help='most objects in one image')
    parser.add_argument(
        '--background',
        choices=BACKGROUNDS,
        default='gradient',
        help="'checker' draws a background the demo never trains on")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    summaries = generate_demo_coco(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed,
        max_objects=args.max_objects,
        background=args.background)
    for summary in summaries:
        print(f'{summary} -> {args.out_dir}')


if __name__ == '__main__':
    main()
