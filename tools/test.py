"""Test (evaluate) a model from a config and a checkpoint.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR]
        [--out results.pkl] [--backbone BACKBONE]
        [--cfg-options key=value ...] [--launcher pytorch]

CHECKPOINT is the trained model (default: the config's ``load_from``; an empty
one counts as none, for tools/dist_test.sh CONFIG "" GPUS); benchmarks whose
config names all its weights (configs/visft/eval/) need none, and take the
backbone to test from --backbone; they train nothing (no ``train_cfg``).
Any other config tested without a checkpoint gets a warning: its heads are
untrained. Paths the config lists in ``required_paths`` are checked before
anything is built; a checkpoint with a key the model has no place for is
refused before it is loaded (:class:`CheckpointFitHook`). A bad input stops
the run with one ``error:`` line.
"""
import argparse
import logging

from mmengine.evaluator import DumpResults
from mmengine.logging import print_log

from visft_mm.engine import CheckpointFitHook
from visft_mm.utils.cli import (add_common_arguments, build_runner,
                                exit_on_input_error, load_tool_config,
                                quiet_known_warnings)
from visft_mm.utils.required_paths import check_required_paths


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help="checkpoint file (default: the config's load_from)")
    parser.add_argument('--out', help='dump predictions to a pickle file')
    add_common_arguments(parser)
    return parser.parse_args()


def main():
    quiet_known_warnings()
    args = parse_args()
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('error: --out must be a .pkl file')
    with exit_on_input_error():
        evaluate(args)


def evaluate(args: argparse.Namespace) -> None:
    cfg = load_tool_config(args)
    if args.checkpoint:
        cfg.load_from = args.checkpoint
    # a config without train_cfg trains nothing: it names all its weights
    if not cfg.get('load_from') and cfg.get('train_cfg') is not None:
        print_log(
            'no checkpoint given and the config sets no load_from: the '
            'heads are tested untrained',
            logger='current',
            level=logging.WARNING)
    check_required_paths(cfg, training=False)
    runner = build_runner(cfg)
    runner.register_hook(CheckpointFitHook())
    if args.out is not None:
        evaluator = runner.test_evaluator
        for each in (evaluator.values()
                     if isinstance(evaluator, dict) else [evaluator]):
            each.metrics.append(DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
