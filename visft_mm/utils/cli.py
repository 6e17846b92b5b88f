"""What the tools share: the common arguments and config set-up of
tools/train.py and tools/test.py (launcher, overrides, work dir, backbone),
and how the tools report bad input."""
import argparse
import os
import os.path as osp
import sys
from contextlib import contextmanager
from typing import Optional

from mmengine.config import Config, DictAction

from visft_mm.checkpoints.io import CheckpointError
from .dist import init_cpu_process_group
from .required_paths import InputError

# The benchmark configs take their backbone from this environment variable,
# through mmengine's substitution:
# backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:...}}'.
BACKBONE_ENV = 'BACKBONE_CHECKPOINT'


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--work-dir', help='the dir to save logs, checkpoints and results')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument(
        '--backbone',
        help='backbone checkpoint, for configs that read it from '
        f'${BACKBONE_ENV} (the benchmarks in configs/visft/eval/): '
        'base or ViSFT-merged')


def read_config(path: str, backbone: Optional[str] = None) -> Config:
    """``Config.fromfile(path)`` with ``$BACKBONE_CHECKPOINT`` set to
    ``backbone`` while the file is read (the process environment is
    restored)."""
    if backbone is None:
        return Config.fromfile(path)
    previous = os.environ.get(BACKBONE_ENV)
    os.environ[BACKBONE_ENV] = backbone
    try:
        return Config.fromfile(path)
    finally:
        if previous is None:
            del os.environ[BACKBONE_ENV]
        else:
            os.environ[BACKBONE_ENV] = previous


def load_tool_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with launcher, ``--cfg-options`` and
    work dir applied (CLI, then config, then ``work_dirs/<config name>``)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = read_config(args.config, args.backbone)
    if args.backbone is not None and cfg.get(
            'backbone_checkpoint') != args.backbone:
        raise SystemExit(f'error: --backbone given, but {args.config} '
                         'does not take its backbone '
                         f"from ${BACKBONE_ENV} (backbone_checkpoint = "
                         f"'{{{{${BACKBONE_ENV}:default}}}}')")
    cfg.launcher = args.launcher
    init_cpu_process_group(args.launcher)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


@contextmanager
def exit_on_bad_input():
    """For the model converters: an unreadable or unfitting input becomes one
    ``error:`` line on stderr and exit status 1, with no traceback."""
    try:
        yield
    except (CheckpointError, KeyError, ValueError, OSError) as e:
        # str(KeyError) adds quotes around the message.
        message = str(
            e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f'error: {message}', file=sys.stderr)
        sys.exit(1)


@contextmanager
def exit_on_input_error():
    """For tools/train.py and tools/test.py: a bad input (:class:`InputError`,
    missing required paths included, or a checkpoint that does not fit)
    becomes ``SystemExit('error: ...')``, one message and no traceback. Other
    errors keep their traceback: they are faults of the code."""
    try:
        yield
    except (InputError, CheckpointError) as e:
        raise SystemExit(f'error: {e}') from None
