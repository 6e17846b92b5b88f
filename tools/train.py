"""Train a visft_mm (or any OpenMMLab) model from a config.

    python tools/train.py configs/visft/eva_4b_stage2.py [--work-dir DIR] \\
        [--amp] [--resume [CKPT]] [--cfg-options key=value ...] \\
        [--launcher pytorch]

Paths the config lists in ``required_paths`` are checked before anything is
built: every missing one is named with how to get it. A bad input (a missing
or malformed file, a checkpoint that does not fit) stops the run with one
``error:`` line.
"""
import argparse

from visft_mm.utils.cli import (add_common_arguments, build_runner,
                                exit_on_input_error, load_tool_config,
                                quiet_known_warnings)
from visft_mm.utils.required_paths import check_required_paths


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision (bfloat16)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in work_dir')
    add_common_arguments(parser)
    return parser.parse_args()


def main():
    quiet_known_warnings()
    args = parse_args()
    with exit_on_input_error():
        train(args)


def train(args: argparse.Namespace) -> None:
    cfg = load_tool_config(args)
    if args.amp and cfg.optim_wrapper.get(
            'type', 'OptimWrapper') in ('OptimWrapper', 'AmpOptimWrapper'):
        # bfloat16 autocast on any device, CPU included; no loss scaling
        cfg.optim_wrapper.type = 'visft_mm.MixedPrecisionOptimWrapper'
        cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    check_required_paths(cfg)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
