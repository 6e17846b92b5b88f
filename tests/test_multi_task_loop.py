"""Multi-task training loop: task ratios, exact resume, validation of every
task without disturbing training, mmengine's seeding across ranks."""
import os
import time
from collections import Counter

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.hooks import Hook
from paper_configs import relocated
from tiny import ROOT, free_port, stage2_cfg, with_tiny_vit
from toy_multi_task import (PAPER_RATIOS, SKEWED_RATIOS, TOY_SEED,
                            TOY_TRAIN_SIZES, TOY_VAL_SIZE, LogMessages,
                            drawn_tasks, sampler_stream, samples_per_task,
                            toy_cfg)

from visft_mm.engine import sample_task, task_counts
from visft_mm.registry import HOOKS
from visft_mm.utils.cli import build_runner
from visft_mm.utils.required_paths import InputError

TASKS = ('caption', 'segmentation', 'detection')
RATIOS = (0.4, 0.3, 0.3)


def test_task_sampling_follows_ratios_and_is_rank_independent():
    counts = task_counts(
        seed=3, num_iters=20000, tasks=TASKS, probabilities=RATIOS)
    for task, ratio in zip(TASKS, RATIOS):
        assert abs(counts[task] / 20000 - ratio) < 0.015, counts
    # two ranks (two independent callers) draw the same sequence from the seed
    rank0 = [sample_task(3, i, TASKS, RATIOS) for i in range(200)]
    rank1 = [sample_task(3, i, TASKS, RATIOS) for i in range(200)]
    assert rank0 == rank1
    assert rank0 != [sample_task(4, i, TASKS, RATIOS) for i in range(200)]


@HOOKS.register_module(force=True)
class StopAfterIter(Hook):
    """Simulates a killed run: raises right after the checkpoint of
    `iteration`."""
    priority = 'LOWEST'

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iteration:
            raise KeyboardInterrupt


@HOOKS.register_module(force=True)
class RecordValidations(Hook):
    """Records the training iteration and the metrics of every validation."""

    def __init__(self):
        self.validations = []

    def after_val_epoch(self, runner, metrics=None):
        self.validations.append((runner.iter, dict(metrics)))


def lora_weights(runner):
    return runner.model.backbone.lora_state_dict()


def train(cfg, resume_from=None):
    if resume_from:
        cfg.resume, cfg.load_from = True, str(resume_from)
    runner = build_runner(cfg)
    runner.train()
    return runner


# Seed 0 draws segmentation, segmentation, detection, segmentation: the
# iteration after the resume reads past what two segmentation steps consumed.
@pytest.mark.parametrize('micro_steps,max_iters', [(1, 6), (2, 4)])
def test_resumed_run_ends_with_the_same_lora(demo_coco, tmp_path, micro_steps,
                                             max_iters):

    def cfg(work_dir, **kwargs):
        return stage2_cfg(
            demo_coco,
            tmp_path / work_dir,
            max_iters=max_iters,
            micro_steps=micro_steps,
            **kwargs)

    full = train(cfg('full'))
    with pytest.raises(KeyboardInterrupt):
        train(
            cfg('killed',
                extra_hooks=[dict(type='StopAfterIter', iteration=3)]))
    resumed = train(
        cfg('killed'), resume_from=tmp_path / 'killed' / 'iter_3.pth')
    expected, got = lora_weights(full), lora_weights(resumed)
    assert any(v.abs().sum() > 0 for k, v in got.items()
               if k.endswith('lora_B'))
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    # one optimizer step per iteration, whatever the micro-batches per step
    for runner in (full, resumed):
        assert runner.iter == max_iters
        assert runner.optim_wrapper.inner_count == max_iters * micro_steps
        optimizer_state = runner.optim_wrapper.optimizer.state.values()
        assert {float(state['step'])
                for state in optimizer_state} == {max_iters}


def test_validation_covers_every_task_and_leaves_training_unchanged(
        demo_coco, tmp_path):
    plain = train(stage2_cfg(demo_coco, tmp_path / 'plain', max_iters=4))
    validated = train(
        stage2_cfg(
            demo_coco,
            tmp_path / 'val',
            max_iters=4,
            val_interval=2,
            extra_hooks=[dict(type='RecordValidations')]))
    for key, value in lora_weights(plain).items():
        assert torch.equal(lora_weights(validated)[key], value), key
    (record, ) = [
        hook for hook in validated.hooks if isinstance(hook, RecordValidations)
    ]
    during_training = list(record.validations)
    metrics = validated.val_loop.run()
    assert {'detection/coco/bbox_mAP',
            'segmentation/coco/segm_mAP'} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    # training itself validated both tasks, at iterations 2 and 4
    assert [iteration for iteration, _ in during_training] == [2, 4]
    for _, iteration_metrics in during_training:
        assert set(iteration_metrics) == set(metrics)


def demo_stage1_detection(demo_coco, work_dir, val_interval):
    """The demo's stage-1 DINO config as it ships, with TINY_VIT and the test
    data: four iterations of two images."""
    cfg = Config.fromfile(
        str(ROOT / 'configs/visft/demo/demo_stage1_detection.py')).to_dict()
    cfg = Config(relocated(cfg, 'data/demo_coco/', f'{demo_coco}/'))
    cfg.model = with_tiny_vit(cfg.model, work_dir / 'pretrained')
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.update(max_iters=4, val_interval=val_interval)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    return cfg


def test_stage1_validation_leaves_training_unchanged(demo_coco, tmp_path):
    """Validating the stage-1 run at every iteration ends it where validating
    after its last iteration only does (ForkedRNGValLoop); with mmengine's
    ValLoop it ends elsewhere: DINO's denoising noise follows the torch
    generator that each validation's dataloader draws from."""

    def trained_head(name, val_interval, val_loop=None):
        cfg = demo_stage1_detection(demo_coco, tmp_path / name, val_interval)
        assert cfg.val_cfg.type == 'ForkedRNGValLoop'
        if val_loop:
            cfg.val_cfg.type = val_loop
        return train(cfg).model.tasks.detection.state_dict()

    at_the_end = trained_head('end', val_interval=4)
    forked = trained_head('forked', val_interval=1)
    for key, value in at_the_end.items():
        assert torch.equal(forked[key], value), key
    shared = trained_head('shared', val_interval=1, val_loop='ValLoop')
    assert any(not torch.equal(shared[key], value)
               for key, value in at_the_end.items())


def test_loop_rejects_mismatched_ratios(demo_coco, tmp_path):
    cfg = stage2_cfg(demo_coco, tmp_path)
    cfg.train_cfg.task_ratios = dict(detection=1.0, caption=1.0)
    with pytest.raises(InputError) as error:
        train(cfg)
    assert str(error.value) == (
        "train_cfg.task_ratios names ['caption'], which no train dataloader "
        "has (train dataloaders: ['detection', 'segmentation'])")


@pytest.mark.parametrize('ratios,micro_steps,counts', [
    (PAPER_RATIOS, 2, dict(caption=9, segmentation=11, detection=10)),
    (SKEWED_RATIOS, 1, dict(caption=24, segmentation=3, detection=3)),
])
def test_iterations_run_the_tasks_drawn_at_task_ratios(tmp_path, ratios,
                                                       micro_steps, counts):
    iters = 30
    cfg = toy_cfg(tmp_path, ratios, max_iters=iters, micro_steps=micro_steps)
    trained = train(cfg).model.seen['loss']
    # an iteration trains its micro-batches, all from its task's loader
    assert len(trained) == iters * micro_steps
    assert all(
        set(sample_tasks) == {task} for task, sample_tasks, _ in trained)
    ran = [task for task, _, _ in trained[::micro_steps]]
    assert [task for task, _, _ in trained
            ] == [task for task in ran for _ in range(micro_steps)]
    assert ran == drawn_tasks(TOY_SEED, iters, ratios)
    assert Counter(ran) == counts
    # equal weights draw other tasks from this seed
    uniform = drawn_tasks(TOY_SEED, iters, dict.fromkeys(ratios, 1))
    assert Counter(uniform) != counts
    # each task streams on through its seeded sampler
    for task, indices in samples_per_task(trained).items():
        assert indices == sampler_stream(TOY_SEED, TOY_TRAIN_SIZES[task],
                                         len(indices))


def test_training_validates_every_task_at_the_interval(tmp_path):
    runner = train(
        toy_cfg(
            tmp_path,
            max_iters=7,
            val_interval=3,
            extra_hooks=[dict(type='RecordValidations')]))
    (record, ) = [
        hook for hook in runner.hooks if isinstance(hook, RecordValidations)
    ]
    every_task = {f'{task}/toy/samples': TOY_VAL_SIZE for task in PAPER_RATIOS}
    # at iterations 3 and 6, and at the last one
    assert record.validations == [(3, every_task), (6, every_task),
                                  (7, every_task)]
    one_validation = [(task, [task] * len(batch), batch)
                      for task in PAPER_RATIOS for batch in ([0, 1], [2])]
    assert runner.model.seen['predict'] == one_validation * 3


def test_datasets_without_metainfo_are_warned_as_mmengine_does(tmp_path):
    runner = build_runner(toy_cfg(tmp_path, with_metainfo=False))
    log = LogMessages()
    runner.logger.addHandler(log)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(log)
    no_metainfo = 'Dataset ToyTaskData has no metainfo. ``dataset_meta`` in '
    assert no_metainfo + 'visualizer will be None.' in log.messages
    for task in PAPER_RATIOS:
        assert (no_metainfo + f"the '{task}' evaluator and metric will be "
                'None.') in log.messages


def test_model_without_tasks_is_refused_in_one_line(tmp_path):
    runner = build_runner(toy_cfg(tmp_path, model='ToyModel'))
    with pytest.raises(TypeError, match='has no task_names') as error:
        runner.train()
    assert '\n' not in str(error.value)
    assert runner.model.seen['loss'] == []


def train_toy_rank(rank, world_size, port, cfg, out_dir):
    """One rank of a gloo job: trains the toy config, saves what it saw."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size)
    try:
        runner = build_runner(cfg)
        runner.train()
        torch.save(
            dict(seed=runner.seed, trained=runner.model.module.seen['loss']),
            f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_diff_rank_seed_keeps_tasks_and_samplers_shared_by_ranks(tmp_path):
    """``randomness.diff_rank_seed`` gives each rank its own seed, as in
    mmengine, yet every rank runs the same tasks and the ranks' samplers
    deal out one seeded stream between them."""
    if torch.cuda.is_initialized():
        pytest.skip('the ranks are forked, and a forked process cannot use '
                    'the CUDA that its parent initialised')
    iters, world_size = 8, 2
    cfg = toy_cfg(tmp_path, max_iters=iters)
    cfg.randomness = dict(seed=TOY_SEED, diff_rank_seed=True)
    cfg.launcher = 'pytorch'
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=None)
    cfg.pop('val_cfg'), cfg.pop('val_dataloader'), cfg.pop('val_evaluator')
    ranks = mp.start_processes(
        train_toy_rank,
        args=(world_size, free_port(), cfg, tmp_path),
        nprocs=world_size,
        join=False,
        start_method='fork')
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail('the two ranks did not finish within 120 s')

    tasks = drawn_tasks(TOY_SEED, iters, PAPER_RATIOS)
    for rank in range(world_size):
        saved = torch.load(tmp_path / f'rank{rank}.pt')
        assert saved['seed'] == TOY_SEED + rank
        assert [task for task, _, _ in saved['trained']] == tasks
        for task, indices in samples_per_task(saved['trained']).items():
            assert indices == sampler_stream(TOY_SEED, TOY_TRAIN_SIZES[task],
                                             len(indices), rank, world_size)
