"""Multi-task training loop: task ratios, exact resume, validation of every
task without disturbing training, mmengine's seeding across ranks."""
import logging
import os
import time
from collections import Counter

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from tiny import free_port, stage2_cfg
from torch.utils.data import Dataset

from visft_mm.engine import sample_task, task_counts
from visft_mm.registry import DATASETS, HOOKS, METRICS, MODELS
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
    runner = Runner.from_cfg(cfg)
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


def test_loop_rejects_mismatched_ratios(demo_coco, tmp_path):
    cfg = stage2_cfg(demo_coco, tmp_path)
    cfg.train_cfg.task_ratios = dict(detection=1.0, caption=1.0)
    with pytest.raises(InputError) as error:
        train(cfg)
    assert str(error.value) == (
        "train_cfg.task_ratios names ['caption'], which no train dataloader "
        "has (train dataloaders: ['detection', 'segmentation'])")


# A toy stage 2 for loop behaviour that the tiny ViSFT runs above would take
# minutes to show on CPU: one shared trainable layer under a frozen head per
# task, and datasets whose samples name their task and index.
TOY_SEED = 0
TOY_TRAIN_SIZES = dict(caption=7, segmentation=5, detection=6)
TOY_VAL_SIZE = 3
PAPER_RATIOS = dict(caption=0.4, segmentation=0.3, detection=0.3)
SKEWED_RATIOS = dict(caption=0.8, segmentation=0.1, detection=0.1)


@DATASETS.register_module(force=True)
class ToyTaskData(Dataset):
    """``length`` samples of one task, each naming its task and index; with
    an mmengine dataset's ``metainfo`` unless ``with_metainfo=False``."""

    def __init__(self, task, length, with_metainfo=True):
        self.task, self.length = task, length
        if with_metainfo:
            self.metainfo = dict(task=task)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return dict(
            inputs=torch.tensor([float(index)]),
            data_samples=dict(task=self.task, index=index))


@MODELS.register_module(force=True)
class ToyModel(BaseModel):
    """A shared trainable layer under a frozen head per task; records the
    task and samples of every batch it trains on or predicts."""

    def __init__(self, tasks):
        super().__init__()
        self.shared = nn.Linear(1, 1)
        self.heads = nn.ModuleDict({task: nn.Linear(1, 1) for task in tasks})
        self.heads.requires_grad_(False)
        self.seen = dict(loss=[], predict=[])

    def forward(self, inputs, data_samples, mode='tensor', task=None):
        self.seen[mode].append(
            (task, data_samples['task'], data_samples['index']))
        out = self.heads[task](self.shared(torch.stack(inputs)))
        if mode == 'loss':
            return dict(loss=out.square().mean())
        return [dict(value=float(value)) for value in out]


@MODELS.register_module(force=True)
class ToyMultiTaskModel(ToyModel):
    """The toy model naming its tasks, as ViSFT does."""

    @property
    def task_names(self):
        return list(self.heads)


@METRICS.register_module(force=True)
class ToySampleCount(BaseMetric):
    """How many samples a validation predicted."""
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return dict(samples=len(results))


def toy_loaders(ratios, train, with_metainfo):
    """Task → loader config: shuffled streams to train on, or each
    validation set once in order."""
    if train:
        sampler = dict(type='InfiniteSampler', shuffle=True)
    else:
        sampler = dict(type='DefaultSampler', shuffle=False)
    return {
        task:
        dict(
            batch_size=2,
            num_workers=0,
            sampler=sampler,
            dataset=dict(
                type='ToyTaskData',
                task=task,
                length=TOY_TRAIN_SIZES[task] if train else TOY_VAL_SIZE,
                with_metainfo=with_metainfo))
        for task in ratios
    }


def toy_cfg(work_dir,
            ratios=PAPER_RATIOS,
            max_iters=4,
            val_interval=1000,
            micro_steps=1,
            model='ToyMultiTaskModel',
            with_metainfo=True,
            extra_hooks=()):
    return Config(
        dict(
            default_scope='visft_mm',
            work_dir=str(work_dir),
            randomness=dict(seed=TOY_SEED),
            model=dict(type=model, tasks=list(ratios)),
            train_dataloader=toy_loaders(ratios, True, with_metainfo),
            train_cfg=dict(
                type='MultiTaskTrainLoop',
                max_iters=max_iters,
                val_interval=val_interval,
                task_ratios=ratios),
            val_dataloader=toy_loaders(ratios, False, with_metainfo),
            val_evaluator=dict.fromkeys(ratios, dict(type='ToySampleCount')),
            val_cfg=dict(type='MultiTaskValLoop'),
            optim_wrapper=dict(
                optimizer=dict(type='SGD', lr=0.01),
                accumulative_counts=micro_steps),
            default_hooks=dict(
                checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=list(extra_hooks),
            log_processor=dict(by_epoch=False),
            log_level='WARNING'))


def drawn_tasks(seed, num_iters, ratios):
    """The documented draw, stated here: iteration ``i`` takes a task with
    numpy's generator seeded by ``[seed, i]``, chosen with the ratios
    normalised as probabilities."""
    tasks, weights = list(ratios), np.array(list(ratios.values()), float)
    return [
        tasks[np.random.default_rng([seed, i]).choice(
            len(tasks), p=weights / weights.sum())] for i in range(num_iters)
    ]


def sampler_stream(seed, size, count, rank=0, world_size=1):
    """The first ``count`` indices that mmengine's ``InfiniteSampler`` gives
    ``rank``: seeded permutations of the dataset, one after another, dealt
    out to the ranks in turn."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    stream = []
    while len(stream) < (count + 1) * world_size:
        stream += torch.randperm(size, generator=generator).tolist()
    return stream[rank::world_size][:count]


def samples_per_task(seen):
    """Task → the sample indices of its batches, in order."""
    samples = {}
    for task, _, indices in seen:
        samples.setdefault(task, []).extend(indices)
    return samples


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


class LogMessages(logging.Handler):
    """Keeps the message of every record logged to it."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_datasets_without_metainfo_are_warned_as_mmengine_does(tmp_path):
    runner = Runner.from_cfg(toy_cfg(tmp_path, with_metainfo=False))
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
    runner = Runner.from_cfg(toy_cfg(tmp_path, model='ToyModel'))
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
        runner = Runner.from_cfg(cfg)
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
