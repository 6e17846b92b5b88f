"""A toy stage 2 for multi-task loop behaviour that tiny ViSFT runs would take
minutes to show on CPU: one shared trainable layer under a frozen head per
task, datasets whose samples name their task and index, and the task draws
the loop must make."""
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from visft_mm.registry import DATASETS, METRICS, MODELS

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
    """The toy run in ``work_dir``, named after it: mmengine's logger and
    visualizer are global instances by run name, which is a timestamp by
    default, so two runs in the same second would share them."""
    return Config(
        dict(
            default_scope='visft_mm',
            work_dir=str(work_dir),
            experiment_name=f'toy_{Path(work_dir).name}',
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


class LogMessages(logging.Handler):
    """Keeps the message of every record logged to it."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
