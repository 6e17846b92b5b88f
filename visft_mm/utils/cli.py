"""What the tools share: the common arguments and config set-up of
tools/train.py and tools/test.py (launcher, overrides, work dir, backbone,
TensorBoard), the silencing of the pinned stack's known start-up warnings,
and how the tools report bad input."""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
import warnings
from contextlib import contextmanager
from typing import Optional, Sequence

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from visft_mm.checkpoints.io import CheckpointError
from visft_mm.checkpoints.lora_files import describe_lora
from visft_mm.engine import CheckpointFitHook
from .dist import init_cpu_process_group
from .required_paths import InputError

# The benchmark configs take their backbone from this environment variable,
# through mmengine's substitution:
# backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:...}}'.
BACKBONE_ENV = 'BACKBONE_CHECKPOINT'

# The pinned stack's known, harmless start-up warnings, by message, category
# and issuing module: mmengine imports and reloads pkg_resources, and mmdet's
# point generators call torch.meshgrid without ``indexing``.
KNOWN_WARNINGS = (
    (r'pkg_resources is deprecated as an API', UserWarning,
     r'(mmengine\.utils\.package_utils|importlib)$'),
    (r'torch\.meshgrid: in an upcoming release', UserWarning,
     r'torch\.functional$'),
)
# mmengine's CheckpointHook builds a FileClient, whose deprecation notices
# are log records (print_log), not warnings.
KNOWN_LOG_NOTICES = ('"FileClient" will be deprecated in future',
                     '"HardDiskBackend" is the alias of "LocalBackend"')


def quiet_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS`; every other warning still shows. Call
    it first: the pkg_resources one comes when a config is read."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=category, module=module)


class QuietKnownLogNotices(logging.Filter):
    """Drops the log records of :data:`KNOWN_LOG_NOTICES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KNOWN_LOG_NOTICES)


def build_runner(cfg: Config) -> Runner:
    """The config's runner (its ``runner_type`` or mmengine's), its logger
    without :data:`KNOWN_LOG_NOTICES`, refusing a ``load_from`` or resumed
    checkpoint with a key the model has no place for
    (:class:`~visft_mm.engine.CheckpointFitHook`; mmengine loads it
    non-strictly)."""
    # The runner writes the config out three to five times (log, work dir,
    # visualizer); yapf-formatting it takes about 3 s on a CPU core each
    # time. mmengine 0.10.7's Config.fromfile drops its own
    # format_python_code=False, so it is switched off here: the text stays
    # the same config, indented but not reflowed.
    object.__setattr__(cfg, '_format_python_code', False)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(
        cfg)
    runner.logger.addFilter(QuietKnownLogNotices())
    runner.register_hook(CheckpointFitHook())
    return runner


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
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also write scalars for TensorBoard (<work dir>/<timestamp>/'
        'vis_data); needs the tensorboard package')


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
    # args not parsed by add_common_arguments may lack the flag
    if getattr(args, 'tensorboard', False):
        require_tensorboard()
        add_tensorboard_backend(cfg)
    return cfg


def require_tensorboard() -> None:
    """Exit with one line if the tensorboard package (which mmengine's
    ``TensorboardVisBackend`` writes through) is missing."""
    if importlib.util.find_spec('tensorboard') is None:
        raise SystemExit('error: --tensorboard needs the tensorboard '
                         'package: pip install tensorboard')


def add_tensorboard_backend(cfg: Config) -> None:
    """Add mmengine's ``TensorboardVisBackend`` to the visualizer's backends
    (mmengine's default visualizer if the config has none), once."""
    visualizer = cfg.get('visualizer') or ConfigDict(
        type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    backends = list(visualizer.get('vis_backends') or [])
    if not any(
            backend.get('type') in ('TensorboardVisBackend',
                                    'mmengine.TensorboardVisBackend')
            for backend in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer.vis_backends = backends
    cfg.visualizer = visualizer


def add_backbone_export_arguments(parser: argparse.ArgumentParser,
                                  out_help: str) -> None:
    """What every backbone export of tools/model_converters takes: the
    backbone, the output file and a LoRA file to merge first."""
    parser.add_argument(
        'backbone',
        help='EVA backbone (EVAViT state dict, e.g. from '
        'merge_lora.py, or any layout eva2visft.py reads)')
    parser.add_argument('out', help=out_help)
    parser.add_argument(
        '--lora',
        help='LoRA file to merge first (visft_mm or official layout)')
    parser.add_argument(
        '--alpha',
        type=float,
        default=None,
        help='LoRA alpha of an official-layout file (default 1)')


def add_cls_token_argument(parser: argparse.ArgumentParser) -> None:
    """For the exports whose target needs a cls token."""
    parser.add_argument(
        '--cls-token-from',
        metavar='CKPT',
        help='checkpoint whose cls_token to use (needed when BACKBONE has '
        'none): eva_vit_g.pth, EVA-CLIP or BLIP-2')


def print_export_report(backbone,
                        notes: Sequence[str],
                        saved: str,
                        cls_token_from: Optional[str] = None) -> None:
    """The lines every backbone export prints: what it read (a
    :class:`~visft_mm.checkpoints.eva_layouts.LoadedBackbone`), the LoRA it
    merged, where the cls token came from (if the export takes one), its
    notes and what it saved."""
    print(f'backbone: {backbone.layout} layout, {backbone.num_layers} blocks')
    lora = describe_lora(backbone.lora) if backbone.lora else 'none'
    print(f'lora:     {lora}')
    if cls_token_from is not None:
        print(f'cls:      {cls_token_from or "the backbone"}')
    for note in notes:
        print(f'note:     {note}')
    print(f'saved:    {saved}')


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
