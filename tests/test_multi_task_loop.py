"""Multi-task training loop: task ratios, exact resume, validation of every
task without disturbing training."""
import numpy as np
import pytest
import torch
from conftest import (TINY_VIT, demo_det_dataloader, tiny_detection_cfg,
                      tiny_segmentation_cfg)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from visft_mm.engine import sample_task, task_counts
from visft_mm.registry import HOOKS

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
    """Simulates a killed run: raises right after the checkpoint of `iteration`."""
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


def stage2_cfg(root,
               work_dir,
               max_iters=6,
               val_interval=1000,
               extra_hooks=(),
               micro_steps=1):
    vit = dict(type='EVAViT', arch=TINY_VIT, pretrain_img_size=112)
    return Config(
        dict(
            default_scope='visft_mm',
            work_dir=str(work_dir),
            randomness=dict(seed=0),
            model=dict(
                type='ViSFT',
                freeze_tasks=True,
                backbone=dict(type='LoRAModel', module=vit, rank=4, alpha=4),
                tasks=dict(
                    detection=tiny_detection_cfg(),
                    segmentation=tiny_segmentation_cfg())),
            train_dataloader=dict(
                detection=demo_det_dataloader(root, 'train'),
                segmentation=demo_det_dataloader(root, 'train', batch_size=1)),
            train_cfg=dict(
                type='MultiTaskTrainLoop',
                max_iters=max_iters,
                val_interval=val_interval,
                task_ratios=dict(detection=0.5, segmentation=0.5)),
            val_dataloader=dict(
                detection=demo_det_dataloader(root, 'val', train=False),
                segmentation=demo_det_dataloader(root, 'val', train=False)),
            val_evaluator=dict(
                detection=dict(
                    type='CocoMetric',
                    metric='bbox',
                    ann_file=str(root / 'annotations/instances_val.json')),
                segmentation=dict(
                    type='CocoMetric',
                    metric='segm',
                    ann_file=str(root / 'annotations/instances_val.json'))),
            val_cfg=dict(type='MultiTaskValLoop'),
            optim_wrapper=dict(
                optimizer=dict(type='AdamW', lr=1e-2, weight_decay=1e-4),
                clip_grad=dict(max_norm=0.1),
                accumulative_counts=micro_steps),
            param_scheduler=[
                dict(
                    type='LinearLR',
                    start_factor=0.5,
                    by_epoch=False,
                    begin=0,
                    end=2),
                dict(
                    type='CosineAnnealingLR',
                    by_epoch=False,
                    begin=2,
                    end=max_iters)
            ],
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=3, by_epoch=False),
                logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=[dict(type='RandomStateHook'), *extra_hooks],
            log_processor=dict(by_epoch=False),
            log_level='WARNING'))


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
        stage2_cfg(demo_coco, tmp_path / 'val', max_iters=4, val_interval=2))
    for key, value in lora_weights(plain).items():
        assert torch.equal(lora_weights(validated)[key], value), key
    metrics = validated.val_loop.run()
    assert {'detection/coco/bbox_mAP',
            'segmentation/coco/segm_mAP'} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())


def test_loop_rejects_mismatched_ratios(demo_coco, tmp_path):
    cfg = stage2_cfg(demo_coco, tmp_path)
    cfg.train_cfg.task_ratios = dict(detection=1.0, caption=1.0)
    with pytest.raises(KeyError, match='task_ratios'):
        train(cfg)
