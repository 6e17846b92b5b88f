"""Test (evaluate) a model from a config and a checkpoint.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR]
        [--out results.pkl] [--backbone BACKBONE]
        [--cfg-options key=value ...] [--launcher pytorch]

CHECKPOINT is the trained model (default: the config's ``load_from``; an empty
one counts as none, for tools/dist_test.sh CONFIG "" GPUS); benchmarks whose
config names all its weights (configs/visft/eval/) need none, and take the
backbone to test from --backbone. Paths the config lists in ``required_paths``
are checked before anything is built; a checkpoint with a key the model has no
place for is refused before it is loaded (:class:`CheckpointFitHook`).
"""
import argparse

from mmengine.evaluator import DumpResults

from visft_mm.engine import CheckpointFitHook
from visft_mm.utils.cli import (add_common_arguments, build_runner,
                                load_tool_config, quiet_known_warnings)
from visft_mm.utils.required_paths import (MissingPathsError,
                                           check_required_paths)


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
    cfg = load_tool_config(args)
    if args.checkpoint:
        cfg.load_from = args.checkpoint
    try:
        check_required_paths(cfg)
    except MissingPathsError as e:
        raise SystemExit(f'error: {e}')
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
