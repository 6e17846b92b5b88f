"""Augmentation seeded per draw: a run resumed with data workers loads the
same augmented batches as the uninterrupted run."""
import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from tiny import IMG, demo_caption_dataloader, demo_det_dataloader
from torch.utils.data import DataLoader

from visft_mm.datasets import (NumberedInfiniteSampler, SampleDraw,
                               SeedPerDrawDataset)
from visft_mm.engine.random_state_hook import loaders_augmenting_anew
from visft_mm.registry import DATASETS, HOOKS, MODELS
from visft_mm.utils.cli import build_runner

# Flips, a random rescale and a random crop: most draws differ.
AUGMENTATION = [
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=(IMG, IMG),
        ratio_range=(0.5, 1.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(80, 80)),
]
HALF = 3  # seed 0 draws caption, caption, detection in each half


def seeded_loader(loader: dict, num_workers: int) -> dict:
    """``loader`` with the demo pipeline's augmentation swapped for
    AUGMENTATION, its draws numbered and each loaded under its own seed."""
    dataset = loader['dataset']
    pipeline = dataset['pipeline']
    load = [t for t in pipeline if t['type'].startswith('Load')]
    dataset['pipeline'] = [*load, *AUGMENTATION, pipeline[-1]]
    return dict(
        loader,
        num_workers=num_workers,
        persistent_workers=False,  # one iterator per run in this loop anyway
        sampler=dict(type='NumberedInfiniteSampler', shuffle=True),
        dataset=dict(type='SeedPerDrawDataset', dataset=dataset))


@MODELS.register_module(force=True)
class MeanPixelModelForTest(BaseModel):
    """One weight fitted to the batches' mean pixel, for every task: a run
    costs next to nothing, and its weight follows the batches it saw."""
    task_names = ('detection', 'caption')

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, inputs, data_samples=None, task=None, mode='loss'):
        mean_pixel = torch.stack([x.float().mean() for x in inputs]).mean()
        return dict(loss=(self.weight - mean_pixel / 255)**2)


@HOOKS.register_module(force=True)
class RecordBatchesForTest(Hook):
    """Keeps each iteration's task, images and (shape, flip) per image."""

    def before_train(self, runner):
        self.batches = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.batches.append(
            dict(
                task=data_batch['task'],
                images=data_batch['inputs'],
                augmentation=[(s.img_shape, s.flip)
                              for s in data_batch['data_samples']]))


def run_cfg(root, work_dir, max_iters: int, num_workers: int) -> Config:
    return Config(
        dict(
            default_scope='visft_mm',
            work_dir=str(work_dir),
            randomness=dict(seed=0),
            model=dict(type='MeanPixelModelForTest'),
            train_dataloader=dict(
                detection=seeded_loader(
                    demo_det_dataloader(root, 'train'), num_workers),
                caption=seeded_loader(
                    demo_caption_dataloader(root, batch_size=2), num_workers)),
            train_cfg=dict(
                type='MultiTaskTrainLoop',
                max_iters=max_iters,
                task_ratios=dict(detection=0.5, caption=0.5)),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=HALF, by_epoch=False),
                logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=[
                dict(type='RandomStateHook'),
                dict(type='RecordBatchesForTest')
            ],
            log_processor=dict(by_epoch=False),
            log_level='WARNING'))


def train(cfg: Config, resume_from=None) -> Runner:
    if resume_from:
        cfg.resume, cfg.load_from = True, str(resume_from)
    runner = build_runner(cfg)
    runner.train()
    return runner


def recorded_batches(runner: Runner) -> list:
    hook, = (h for h in runner.hooks if isinstance(h, RecordBatchesForTest))
    return hook.batches


@pytest.mark.parametrize('num_workers', [0, 2])
def test_resumed_run_loads_the_same_augmented_batches(demo_coco, tmp_path,
                                                      num_workers):
    full = train(run_cfg(demo_coco, tmp_path / 'full', 2 * HALF, num_workers))
    first = train(run_cfg(demo_coco, tmp_path / 'split', HALF, num_workers))
    resumed = train(
        run_cfg(demo_coco, tmp_path / 'split', 2 * HALF, num_workers),
        resume_from=tmp_path / 'split' / f'iter_{HALF}.pth')
    expected = recorded_batches(full)
    got = recorded_batches(first) + recorded_batches(resumed)
    assert [b['task'] for b in got] == [b['task'] for b in expected]
    assert {b['task'] for b in expected[HALF:]} == {'detection', 'caption'}
    for step, (want, have) in enumerate(zip(expected, got)):
        assert have['augmentation'] == want['augmentation'], step
        for want_image, have_image in zip(want['images'], have['images']):
            assert torch.equal(have_image, want_image), step
    assert torch.equal(resumed.model.weight, full.model.weight)
    # the augmentation is random: flips both ways, several image sizes
    augmentation = [a for b in expected for a in b['augmentation']]
    assert {flip for _, flip in augmentation} == {True, False}
    assert len({shape for shape, _ in augmentation}) > 1


def test_a_draw_augments_by_its_position_and_keeps_the_global_rng(demo_coco):
    init_default_scope('visft_mm')
    loader = seeded_loader(demo_det_dataloader(demo_coco, 'train'), 0)
    dataset = DATASETS.build(loader['dataset'])
    sampler = NumberedInfiniteSampler(dataset, seed=0)
    first_pass = list(zip(range(len(dataset)), sampler))
    assert [d.draw for _, d in first_pass] == list(range(len(dataset)))
    assert sorted(d.index for _, d in first_pass) == list(range(len(dataset)))
    # a rank numbers its draws by their places in the stream of all ranks
    sampler.rank, sampler.world_size = 1, 2
    second_rank = list(itertools.islice(sampler._indices_of_rank(), 3))
    assert second_rank == [d for _, d in first_pass][1:7:2]

    def augmented(draw):
        return dataset[draw]['inputs']

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    states = (random.getstate(), np.random.get_state()[1].copy(),
              torch.get_rng_state())
    draw = SampleDraw(index=0, seed=0, draw=0)
    assert torch.equal(augmented(draw), augmented(draw))
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])
    # the same image drawn again later (another pass) augments anew
    later = [SampleDraw(index=0, seed=0, draw=d) for d in range(1, 9)]
    assert any(not torch.equal(augmented(d), augmented(draw)) for d in later)


def test_draws_and_wrapper_refuse_each_others_absence(demo_coco):
    init_default_scope('visft_mm')
    loader = seeded_loader(demo_det_dataloader(demo_coco, 'train'), 0)
    dataset = DATASETS.build(loader['dataset'])
    with pytest.raises(TypeError, match='SeedPerDrawDataset'):
        NumberedInfiniteSampler(dataset.dataset, seed=0)
    with pytest.raises(TypeError, match='NumberedInfiniteSampler'):
        dataset[0]
    assert isinstance(dataset, SeedPerDrawDataset)
    assert dataset.metainfo == dataset.dataset.metainfo


def test_resume_names_the_loaders_whose_workers_augment_anew(demo_coco):
    init_default_scope('visft_mm')
    loader = seeded_loader(demo_det_dataloader(demo_coco, 'train'), 0)
    wrapped = DATASETS.build(loader['dataset'])
    loaders = dict(
        plain_with_workers=DataLoader(wrapped.dataset, num_workers=2),
        seeded_with_workers=DataLoader(wrapped, num_workers=2),
        plain_in_process=DataLoader(wrapped.dataset, num_workers=0))
    runner = SimpleNamespace(
        train_loop=SimpleNamespace(task_dataloaders=loaders))
    assert loaders_augmenting_anew(runner) == ['plain_with_workers']
