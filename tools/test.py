"""Test (evaluate) a model from a config and a checkpoint.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR]
        [--out results.pkl] [--show-dir DIR] [--show [--wait-time S]]
        [--backbone BACKBONE] [--cfg-options key=value ...]
        [--launcher pytorch]

CHECKPOINT is the trained model (default: the config's ``load_from``; an empty
one counts as none, for tools/dist_test.sh CONFIG "" GPUS); benchmarks whose
config names all its weights (configs/visft/eval/) need none, and take the
backbone to test from --backbone; they train nothing (no ``train_cfg``).
Any other config tested without a checkpoint gets a warning: its heads are
untrained. Paths the config lists in ``required_paths`` are checked before
anything is built; a checkpoint with a key the model has no place for is
refused before it is loaded (:class:`CheckpointFitHook`). A bad input stops
the run with one ``error:`` line.

``--out FILE`` dumps the predictions as mmdet's ``DumpDetResults`` does (masks
as RLE). A multi-task config (ViSFT stage 2) writes one such file per task,
its name before the suffix (``results.pkl`` → ``results.detection.pkl``,
``results.caption.pkl``), so each reads as a single task's; a single-task
config writes FILE itself. ``--show-dir DIR`` draws each test image's
predictions into ``DIR/<task>/`` (under ``<work dir>/<timestamp>/`` unless
DIR is absolute, as in mmdet): boxes and masks with the class names of that
task's dataset, captions written onto the image; ``--show`` shows them in a
window. Where each went is printed at the end.
"""
import argparse
import logging
import os.path as osp
from typing import Dict, Optional

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmengine.dist import is_main_process
from mmengine.logging import print_log

from visft_mm.engine import MultiTaskVisualizationHook
from visft_mm.utils.cli import (add_common_arguments, build_runner,
                                exit_on_input_error, load_tool_config,
                                quiet_known_warnings)
from visft_mm.utils.required_paths import InputError, check_required_paths

# The visualization hooks that --show and --show-dir can turn on.
DRAWING_HOOKS = ('MultiTaskVisualizationHook', 'DetVisualizationHook')


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help="checkpoint file (default: the config's load_from)")
    parser.add_argument(
        '--out',
        help='dump predictions to a pickle file; a multi-task config writes '
        'one per task, named with the task before the suffix '
        '(results.pkl: results.detection.pkl, results.caption.pkl, ...)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images are saved, one folder per task '
        '(DIR/<task>/); a relative DIR is put under work_dir/timestamp')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
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
    if args.show or args.show_dir:
        turn_on_drawing(cfg, args)
    runner = build_runner(cfg)
    dumps = {}
    if args.out is not None:
        dumps = add_dumps(runner.test_evaluator, args.out)
    runner.test()
    if is_main_process():
        for task, path in dumps.items():
            print(f'predictions{f" of {task}" if task else ""}: {path}')
        for hook in runner.hooks:
            if isinstance(hook, MultiTaskVisualizationHook):
                for task, folder in hook.picture_dirs().items():
                    print(f'pictures{f" of {task}" if task else ""}: '
                          f'{folder}')


def turn_on_drawing(cfg, args: argparse.Namespace) -> None:
    """mmdet's ``trigger_visualization_hook``, for the hooks that draw into
    a folder (:data:`DRAWING_HOOKS`)."""
    hook = cfg.get('default_hooks', {}).get('visualization') or {}
    if not str(hook.get('type')).endswith(DRAWING_HOOKS):
        raise InputError(
            f'--show and --show-dir need default_hooks.visualization to be '
            f'one of {", ".join(DRAWING_HOOKS)}; the config has '
            f'{hook.get("type")}')
    trigger_visualization_hook(cfg, args)


def task_out_file(out: str, task: str) -> str:
    """``out`` with the task before its suffix: ``results.detection.pkl``."""
    root, suffix = osp.splitext(out)
    return f'{root}.{task}{suffix}'


def add_dumps(evaluator, out: str) -> Dict[Optional[str], str]:
    """Dump each task's predictions (a dict of evaluators: the multi-task
    loops) to :func:`task_out_file`, a single evaluator's to ``out``;
    returns task (``None`` for a single evaluator) → file."""
    evaluators = evaluator if isinstance(evaluator, dict) else {
        None: evaluator
    }
    dumps = {}
    for task, each in evaluators.items():
        dumps[task] = out if task is None else task_out_file(out, task)
        each.metrics.append(DumpDetResults(out_file_path=dumps[task]))
    return dumps


if __name__ == '__main__':
    main()
