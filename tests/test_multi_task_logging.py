"""Logs of multi-task runs: a training line names its task and shows only
that task's losses, smoothed over its own iterations; metric keys carry the
task name once; validation scalars are stored at their iteration; every
evaluation ends with one table of each task's metrics; the tools run without
the pinned stack's known warnings and add TensorBoard on one flag."""
import argparse
import contextlib
import importlib.util
import io
import json
import re
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.visualization import Visualizer
from tiny import ROOT, import_script, run_script, stage2_cfg
from toy_multi_task import (PAPER_RATIOS, TOY_SEED, LogMessages,
                            ToyMultiTaskModel, drawn_tasks, toy_cfg,
                            toy_loaders)

from visft_mm.registry import MODELS
from visft_mm.utils import cli

# Each task's losses on a scale of its own, so that a value mixed from
# another task's shows.
SCALES = dict(caption=1.0, segmentation=100.0, detection=10000.0)
WINDOW = 2
RUNTIME = ROOT / 'configs/_base_/default_runtime.py'


@MODELS.register_module(force=True)
class ToyCountedLosses(ToyMultiTaskModel):
    """The toy multi-task model with losses named as ViSFT names them: the
    k-th iteration of a task has ``<task>.loss_count`` k × the task's scale
    and ``<task>.loss_scale`` the scale."""

    def __init__(self, tasks):
        super().__init__(tasks)
        self.counts = dict.fromkeys(tasks, 0)

    def forward(self, inputs, data_samples, mode='tensor', task=None):
        out = super().forward(inputs, data_samples, mode, task)
        if mode != 'loss':
            return out
        self.counts[task] += 1
        zero = 0 * out['loss']
        return {
            f'{task}.loss_count': zero + SCALES[task] * self.counts[task],
            f'{task}.loss_scale': zero + SCALES[task]
        }


def runtime_cfg(work_dir, **kwargs):
    """The toy run under the logger hook and log processor of
    configs/_base_/default_runtime.py, logging every iteration."""
    cfg = toy_cfg(work_dir, **kwargs)
    runtime = Config.fromfile(RUNTIME)
    cfg.default_hooks.logger = dict(runtime.default_hooks.logger, interval=1)
    cfg.log_processor = runtime.log_processor
    cfg.log_level = 'INFO'
    return cfg


def run_logged(runner, method):
    """Run ``runner.<method>()`` and return its result and log messages."""
    log = LogMessages()
    runner.logger.addHandler(log)
    try:
        return getattr(runner, method)(), log.messages
    finally:
        runner.logger.removeHandler(log)


def line_items(line):
    """``key: value`` items of a log line, after its ``Iter(...) [i/n]``."""
    return dict(
        item.split(': ', 1) for item in line.split(']  ', 1)[1].split('  ')
        if ': ' in item)


def scalars(runner):
    path = Path(runner.log_dir) / 'vis_data' / 'scalars.json'
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_line_names_its_task_and_averages_only_its_losses(tmp_path):
    iters = 12
    cfg = runtime_cfg(tmp_path, max_iters=iters)
    cfg.model.type = 'ToyCountedLosses'
    cfg.log_processor.window_size = WINDOW
    runner = cli.build_runner(cfg)
    _, messages = run_logged(runner, 'train')
    lines = [m for m in messages if m.startswith('Iter(train)')]
    train_scalars = [s for s in scalars(runner) if 'lr' in s]
    tasks = drawn_tasks(TOY_SEED, iters, PAPER_RATIOS)
    assert len(set(tasks)) == 3 and len(lines) == len(train_scalars) == iters
    for i, (task, line, logged) in enumerate(zip(tasks, lines, train_scalars)):
        items = line_items(line)
        assert items['task'] == task, line
        assert {'lr', 'eta', 'time', 'data_time'} <= set(items)
        assert {key
                for key in items
                if '.' in key} == {f'{task}.loss_count',
                                   f'{task}.loss_scale'}, line
        # the mean of this task's last WINDOW iterations only
        k = tasks[:i + 1].count(task)
        counts = range(max(1, k - WINDOW + 1), k + 1)
        count = SCALES[task] * sum(counts) / len(counts)
        assert float(items[f'{task}.loss_count']) == pytest.approx(count)
        assert float(items['loss']) == pytest.approx(count + SCALES[task])
        # the visualizer's scalars are the line's, without the task's name
        assert logged['step'] == i + 1 and 'task' not in logged
        assert {key
                for key in logged
                if '.' in key} == {f'{task}.loss_count', f'{task}.loss_scale'}
        assert logged['loss'] == pytest.approx(count + SCALES[task])


def test_validation_scalars_are_stored_at_their_iteration(tmp_path):
    runner = cli.build_runner(
        runtime_cfg(tmp_path, max_iters=4, val_interval=2))
    runner.train()
    steps = [s['step'] for s in scalars(runner) if 'caption/toy/samples' in s]
    assert steps == [2, 4]


def metric_rows(messages, stage):
    """The (task, metric, value) rows of the evaluation's metric table."""
    (table, ) = [
        m for m in messages
        if m.startswith(f'Metrics of every task ({stage}):')
    ]
    return [
        tuple(cell.strip() for cell in row.strip('|').split('|'))
        for row in table.splitlines()[4:-1]
    ]


@pytest.mark.parametrize('stage', ['val', 'test'])
def test_metrics_carry_the_task_once_and_end_in_one_table(tmp_path, stage):
    cfg = toy_cfg(tmp_path)
    cfg.log_level = 'INFO'
    # the caption metric's own prefix is its task's name
    evaluators = {
        task:
        dict(type='ToySampleCount', prefix='caption')
        if task == 'caption' else dict(type='ToySampleCount')
        for task in PAPER_RATIOS
    }
    cfg[f'{stage}_dataloader'] = toy_loaders(PAPER_RATIOS, False, True)
    cfg[f'{stage}_evaluator'] = evaluators
    cfg[f'{stage}_cfg'] = dict(type=f'MultiTask{stage.title()}Loop')
    metrics, messages = run_logged(cli.build_runner(cfg), stage)
    assert metrics == {
        'caption/samples': 3,
        'segmentation/toy/samples': 3,
        'detection/toy/samples': 3
    }
    assert metric_rows(messages, stage) == [
        ('caption', 'samples', '3'),
        ('segmentation', 'toy/samples', '3'),
        ('detection', 'toy/samples', '3'),
    ]


def test_demo_configs_log_progress_at_info():
    configs = sorted((ROOT / 'configs/visft/demo').glob('*.py'))
    assert len(configs) == 4
    for path in configs:
        assert Config.fromfile(path).log_level == 'INFO', path


# what the pinned stack says on start-up without cli.quiet_known_warnings
KNOWN_NOISE = ('pkg_resources is deprecated', 'torch.meshgrid',
               '"FileClient" will be deprecated', '"HardDiskBackend" is')


def test_train_tool_logs_its_task_without_known_warnings(demo_coco, tmp_path):
    """One iteration of a tiny stage 2 (segmentation, from seed 0: mmdet's
    point generator calls torch.meshgrid) under the repository's runtime
    (mmdet:: base: pkg_resources) through tools/train.py, every warning
    shown."""
    cfg = stage2_cfg(demo_coco, tmp_path / 'run', max_iters=1)
    for key in ('val_cfg', 'val_dataloader', 'val_evaluator'):
        cfg.pop(key)
    cfg.param_scheduler, cfg.log_level = [], 'INFO'
    config = tmp_path / 'tiny_stage2.py'
    config.write_text(f'_base_ = [{str(RUNTIME)!r}]\n{cfg.pretty_text}')
    done = run_script('-W', 'default', 'tools/train.py', config)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in KNOWN_NOISE:
        assert noise not in done.stderr + done.stdout, noise
    (line, ) = re.findall(r'Iter\(train\) \[1/1\].*', done.stdout)
    assert line_items(line)['task'] == 'segmentation'
    assert 'detection.' not in line and 'segmentation.loss_cls' in line


def test_demo_shows_progress_metrics_and_warnings_only(tmp_path):
    """tools/misc/run_demo.py shows of a run's log the line of each logged
    interval and the metric table, not the environment and config dump."""
    run_demo = import_script(ROOT / 'tools/misc/run_demo.py')
    cfg = runtime_cfg(tmp_path, max_iters=4, val_interval=4)
    cfg.default_hooks.logger.interval = 2
    # a logger of its own: an earlier runner of the same second would lend
    # its logger, which writes elsewhere
    cfg.experiment_name = 'demo_log_display'
    shown = io.StringIO()
    # as the demo's evaluation: the logger writes to the stdout of its
    # creation
    with contextlib.redirect_stdout(run_demo.LogDisplay(shown)):
        runner = cli.build_runner(cfg)
        runner.logger.warning('a warning')
        runner.train()
    lines = shown.getvalue().splitlines()
    assert lines[0] == 'WARNING - a warning'
    assert [line.split(']')[0] for line in lines[1:3]
            ] == ['Iter(train) [2/4', 'Iter(train) [4/4']
    assert 'task: ' in lines[1] and 'eta: ' in lines[1]
    # validation: each task's progress at the interval, then its metrics
    assert [line[line.index('task: '):] for line in lines[3:6]
            ] == [f'task: {task}' for task in PAPER_RATIOS]
    assert re.match(r'Iter\(val\) \[2/2\] +caption/toy/samples: 3  ', lines[6])
    assert lines[7:] == metric_table_lines(PAPER_RATIOS, 'toy/samples', 3)


def metric_table_lines(tasks, metric, value):
    return [
        '+--------------+-------------+-------+',
        '| task         | metric      | value |',
        '+--------------+-------------+-------+'
    ] + [f'| {task:<12} | {metric} | {value:>5} |'
         for task in tasks] + ['+--------------+-------------+-------+']


def tool_args(config, *flags):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    cli.add_common_arguments(parser)
    return parser.parse_args([str(config), *flags])


def test_tensorboard_flag_adds_the_backend_or_says_how_to_install(
        tmp_path, monkeypatch):
    config = tmp_path / 'plain.py'
    Config(dict(work_dir=str(tmp_path))).dump(config)
    assert not tool_args(config).tensorboard
    args = tool_args(config, '--tensorboard')
    real_find_spec = importlib.util.find_spec
    with monkeypatch.context() as missing:
        missing.setattr(
            importlib.util, 'find_spec', lambda name, *rest: None
            if name == 'tensorboard' else real_find_spec(name, *rest))
        with pytest.raises(SystemExit) as error:
            cli.load_tool_config(args)
    assert 'pip install tensorboard' in str(error.value)
    assert '\n' not in str(error.value)

    # mmengine's default visualizer, or the config's, gains the backend once
    cfg = Config(dict(work_dir=str(tmp_path)))
    cli.add_tensorboard_backend(cfg)
    cli.add_tensorboard_backend(cfg)
    assert cfg.visualizer.type == 'Visualizer'
    assert [b['type'] for b in cfg.visualizer.vis_backends
            ] == ['LocalVisBackend', 'TensorboardVisBackend']
    cfg = Config.fromfile(RUNTIME)
    cli.add_tensorboard_backend(cfg)
    assert cfg.visualizer.type == 'visft_mm.ViSFTVisualizer'
    assert [b['type'] for b in cfg.visualizer.vis_backends
            ] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_tensorboard_backend_writes_events(tmp_path):
    pytest.importorskip('tensorboard')
    cfg = Config(dict(work_dir=str(tmp_path)))
    cli.add_tensorboard_backend(cfg)
    visualizer = Visualizer(
        name='tensorboard_events',
        vis_backends=cfg.visualizer.vis_backends,
        save_dir=str(tmp_path))
    visualizer.add_scalars({'loss': 1.0}, step=1)
    visualizer.close()
    assert list(tmp_path.rglob('events.out.tfevents.*'))


if __name__ == '__main__':
    sys.exit(pytest.main([__file__]))


def test_runs_write_their_config_out_without_reformatting_it(
        tmp_path, monkeypatch):
    """build_runner's runs write the config (log, work dir, visualizer)
    without yapf, which took about 3 s a time, and the text written reads
    back as the same config."""
    import mmengine.config.config as mmengine_config

    def no_yapf(*args, **kwargs):
        raise AssertionError('the config was formatted with yapf')

    monkeypatch.setattr(mmengine_config, 'FormatCode', no_yapf)
    cfg = runtime_cfg(tmp_path, max_iters=1, val_interval=1)
    cfg.experiment_name = 'unformatted_config'
    runner = cli.build_runner(cfg)
    runner.train()
    dumped = sorted(tmp_path.glob('**/vis_data/config.py'))
    assert dumped, 'the visualizer wrote no config'
    assert Config.fromfile(str(dumped[0])).to_dict() == runner.cfg.to_dict()
