"""Base vs ViSFT on out-of-domain benchmarks, side by side (the paper's
tables).

    python tools/analysis_tools/compare_visft.py CONFIG [CONFIG ...] \\
        --visft checkpoints/eva_g_visft.pth \\
        [--base checkpoints/eva_vit_g.pth] \\
        [--work-dir work_dirs/compare_visft] [--nproc 8] [--rerun] \\
        [--metrics top1 recall] [--out table.md]

Each CONFIG is a benchmark from configs/visft/eval/, which reads its backbone
from $BACKBONE_CHECKPOINT. For each one and each backbone, the tool reads the
metrics of an earlier run in ``<work-dir>/<config name>/<base|visft>/`` (the
json mmengine writes after ``tools/test.py``) or, if there is none or with
``--rerun``, runs ``tools/test.py`` there first; a probe, which trains before
it tests, must have been trained there with ``tools/train.py``. Without
``--base`` the base run uses the config's default backbone. Then it prints one
row per metric: benchmark, metric, base, ViSFT, delta.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from visft_mm.utils.cli import read_config

ROOT = Path(__file__).resolve().parents[2]
LABELS = ('base', 'visft')
# Bookkeeping that mmengine logs with the metrics.
NOT_METRICS = {'step', 'time', 'data_time', 'iter', 'epoch', 'memory', 'lr'}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'configs', nargs='+', help='benchmark configs (configs/visft/eval/)')
    parser.add_argument(
        '--visft', required=True, help='the ViSFT-merged backbone checkpoint')
    parser.add_argument(
        '--base',
        help='the base backbone checkpoint (default: the config\'s own)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/compare_visft',
        help='where the runs and their results live')
    parser.add_argument(
        '--nproc',
        type=int,
        default=1,
        help='processes per run (torchrun with --launcher pytorch when > 1)')
    parser.add_argument(
        '--rerun',
        action='store_true',
        help='run every benchmark again even where results exist')
    parser.add_argument(
        '--metrics',
        nargs='+',
        help='only metrics whose name contains one of these strings')
    parser.add_argument(
        '--out', help='also write the table to this markdown file')
    return parser.parse_args(argv)


def latest_metrics(work_dir: Path) -> Optional[Dict[str, float]]:
    """The metrics of the newest ``tools/test.py`` run in ``work_dir``: the
    last line of ``<timestamp>/<timestamp>.json``, or None if there is none."""
    runs = sorted(
        p for p in work_dir.glob('*/*.json') if p.stem == p.parent.name)
    for path in reversed(runs):
        lines = path.read_text().strip().splitlines()
        if lines:
            record = json.loads(lines[-1])
            return {
                k: float(v)
                for k, v in record.items()
                if k not in NOT_METRICS and isinstance(v, (int, float))
            }
    return None


def test_command(config: str, work_dir: Path, backbone: Optional[str],
                 nproc: int) -> List[str]:
    tool = [str(ROOT / 'tools/test.py'), config, '--work-dir', str(work_dir)]
    if backbone is not None:
        tool += ['--backbone', backbone]
    if nproc > 1:
        return [
            sys.executable, '-m', 'torch.distributed.run',
            f'--nproc-per-node={nproc}', *tool, '--launcher', 'pytorch'
        ]
    return [sys.executable, *tool]


def benchmark_metrics(config: str, label: str, backbone: Optional[str],
                      args: argparse.Namespace) -> Dict[str, float]:
    work_dir = Path(args.work_dir) / osp.splitext(
        osp.basename(config))[0] / label
    metrics = None if args.rerun else latest_metrics(work_dir)
    if metrics is None:
        if read_config(config, backbone).get('train_dataloader') is not None:
            raise SystemExit(
                f'error: {config} trains a probe before testing it; '
                f'no results in {work_dir}. '
                f'Run: python tools/train.py {config} ' +
                (f'--backbone {backbone} ' if backbone else '') +
                f'--work-dir {work_dir}')
        print(
            f'running {config} with the {label} backbone '
            f'({backbone or "the config default"}) in {work_dir}',
            flush=True)
        subprocess.run(
            test_command(config, work_dir, backbone, args.nproc), check=True)
        metrics = latest_metrics(work_dir)
        if metrics is None:
            raise SystemExit(
                f'error: {config} ({label}) finished without writing metrics '
                f'under {work_dir}')
    else:
        print(
            f'reading the {label} results of {config} from {work_dir}',
            flush=True)
    return metrics


def table_rows(config: str, base: Dict[str, float], visft: Dict[str, float],
               wanted: Optional[Sequence[str]]) -> List[tuple]:
    """(benchmark, metric, base, ViSFT, delta) for every metric both runs
    report."""
    name = osp.splitext(osp.basename(config))[0]
    rows = []
    for metric in sorted(set(base) & set(visft)):
        if wanted and not any(w in metric for w in wanted):
            continue
        rows.append((name, metric, base[metric], visft[metric],
                     visft[metric] - base[metric]))
    return rows


def format_table(rows: Sequence[tuple]) -> str:
    header = ('benchmark', 'metric', 'base', 'ViSFT', 'delta')
    cells = [header] + [(b, m, f'{x:.4g}', f'{y:.4g}', f'{d:+.4g}')
                        for b, m, x, y, d in rows]
    lines = ['| ' + ' | '.join(row) + ' |' for row in cells]
    lines.insert(1, '|' + '|'.join('---' for _ in header) + '|')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    for path in [args.visft] + ([args.base] if args.base else []) + list(
            args.configs):
        if not osp.isfile(path):
            raise SystemExit(f'error: no such file: {path}')
    rows = []
    for config in args.configs:
        results = {
            label: benchmark_metrics(config, label, backbone, args)
            for label, backbone in zip(LABELS, (args.base, args.visft))
        }
        found = table_rows(config, results['base'], results['visft'],
                           args.metrics)
        if not found:
            print(
                f'warning: {config}: no metric in common between the two runs'
                + (f' matching {args.metrics}' if args.metrics else ''),
                file=sys.stderr)
        rows += found
    table = format_table(rows)
    print('\n' + table)
    if args.out:
        Path(args.out).write_text(table + '\n')
    return table


if __name__ == '__main__':
    main()
