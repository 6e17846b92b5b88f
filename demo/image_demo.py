"""Draw a trained ViSFT model's predictions on one image.

    python demo/image_demo.py IMAGE CONFIG CHECKPOINT [--out-dir outputs]
        [--device cpu] [--pred-score-thr 0.3] [--show]

CONFIG is a stage-2 config (every task) or a stage-1 one (its task); the
model is loaded as tools/test.py loads it: the frozen backbone from the
config's ``init_cfg``, every key of CHECKPOINT fitting the model. One picture
per task is written, ``OUT_DIR/<task>/<image name>``, as tools/test.py
--show-dir lays them out: boxes and masks with the class names of the task's
test dataset in CONFIG, the caption written onto the image.
"""
import argparse

import torch

from visft_mm.utils.cli import (exit_on_input_error, quiet_known_warnings,
                                read_config)
from visft_mm.visualization import draw_image_pictures, init_visft


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='ViSFT config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='output directory: OUT_DIR/<task>/<image name>')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device used for inference')
    parser.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='boxes and masks scored below are not drawn')
    parser.add_argument(
        '--show', action='store_true', help='show each picture in a window')
    return parser.parse_args()


def main():
    quiet_known_warnings()
    args = parse_args()
    with exit_on_input_error():
        config = read_config(args.config)
        model = init_visft(config, args.checkpoint, args.device)
        pictures = draw_image_pictures(model, config, args.image, args.out_dir,
                                       args.pred_score_thr, args.show)
    for task, path in pictures.items():
        print(f'{task}: {path}')


if __name__ == '__main__':
    main()
