"""Gradient accumulation follows data parallelism step for step: 1 process × 4
accumulated micro-batches, 2 processes × 2 (started by tools/slurm_train.sh)
and 4 processes × 1 (tools/dist_train.sh) run the same task and images at every
optimizer step and end with the same LoRA, within float32 rounding.

The runs must agree in exact arithmetic, so the data and model leave nothing
to chance or to the batch split: micro-batches of one sample, no flips, no
dropout, and one object per image, since DETR divides its box losses by the
box count averaged over ranks (per micro-batch when accumulating)."""
import copy
import os
import subprocess
import sys
from pathlib import Path

# registers RecordTasksAndLoRA for the in-process run
import ddp_probe  # noqa: F401
import pytest
import torch
from mmengine.config import Config
from tiny import (IMG, demo_caption_dataloader, demo_det_dataloader, free_port,
                  frozen_tiny_vit, stage2_schedule, tiny_caption_cfg,
                  tiny_detection_cfg)

from visft_mm.demo.demo_coco import generate_demo_coco
from visft_mm.utils.cli import build_runner

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = 3
SAMPLES_PER_STEP = 4


@pytest.fixture(scope='module')
def one_object_coco(tmp_path_factory):
    """Demo images with exactly one object each."""
    root = tmp_path_factory.mktemp('one_object_coco')
    generate_demo_coco(
        str(root), num_train=8, num_val=1, img_size=IMG, max_objects=1)
    return root


def without_dropout(cfg):
    """A copy of a model config with every dropout probability set to 0."""
    if isinstance(cfg, dict):
        return {
            key:
            0. if key in ('dropout', 'ffn_drop') else without_dropout(value)
            for key, value in cfg.items()
        }
    if isinstance(cfg, list):
        return [without_dropout(value) for value in cfg]
    return copy.deepcopy(cfg)


def accumulation_cfg(root: Path, work_dir: Path, micro_steps: int) -> Config:
    detection_loader = demo_det_dataloader(root, 'train', batch_size=1)
    pipeline = detection_loader['dataset']['pipeline']
    detection_loader['dataset']['pipeline'] = [
        t for t in pipeline if t['type'] != 'RandomFlip'
    ]
    return Config(
        dict(
            default_scope='visft_mm',
            work_dir=str(work_dir),
            randomness=dict(seed=0),
            custom_imports=dict(
                imports=['ddp_probe'], allow_failed_imports=False),
            model=dict(
                type='ViSFT',
                freeze_tasks=True,
                backbone=dict(
                    type='LoRAModel',
                    rank=4,
                    alpha=4,
                    module=frozen_tiny_vit(work_dir / 'pretrained')),
                tasks=dict(
                    caption=tiny_caption_cfg(root),
                    detection=without_dropout(tiny_detection_cfg()))),
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', device_ids=None),
            train_dataloader=dict(
                caption=demo_caption_dataloader(root),
                detection=detection_loader),
            train_cfg=dict(
                type='MultiTaskTrainLoop',
                max_iters=STEPS,
                task_ratios=dict(caption=0.5, detection=0.5)),
            # AdamW with clipping and warmup: the step must see the whole
            # batch's gradient, and the schedule must count optimizer steps
            **stage2_schedule(1e-3, STEPS, micro_steps),
            default_hooks=dict(
                checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=[dict(type='RecordTasksAndLoRA')],
            log_processor=dict(by_epoch=False),
            log_level='WARNING'))


def launch(script: str, args, env_vars: dict, path=()) -> None:
    """Run a launch script of tools/, with this Python first on PATH after
    ``path``."""
    env = dict(
        os.environ,
        PYTHONPATH=f'{ROOT / "tests"}{os.pathsep}{ROOT}',
        OMP_NUM_THREADS='1',
        MASTER_ADDR='127.0.0.1',
        **env_vars)
    env['PATH'] = os.pathsep.join(
        [*map(str, path), str(BIN), os.environ['PATH']])
    result = subprocess.run(
        ['bash', str(ROOT / 'tools' / script), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


def optimizer_steps(work_dir: Path, processes: int, micro_steps: int):
    """Per optimizer step: its task and the samples every rank and
    micro-batch saw; and rank 0's final LoRA. Checks that the ranks agree on
    the tasks and LoRA."""
    ranks = [torch.load(work_dir / f'rank{r}.pt') for r in range(processes)]
    steps = []
    for step, task in enumerate(ranks[0]['tasks']):
        samples = []
        for rank in ranks:
            assert rank['tasks'][step] == task
            for micro_task, micro_samples in rank['micro_batches'][
                    step * micro_steps:(step + 1) * micro_steps]:
                assert micro_task == task
                samples += micro_samples
        steps.append((task, sorted(samples)))
    for rank in ranks[1:]:
        for key, value in ranks[0]['lora'].items():
            assert torch.equal(rank['lora'][key], value), key
    return steps, ranks[0]['lora']


@pytest.mark.skipif(
    not (BIN / 'torchrun').exists(), reason='torchrun is not installed')
def test_accumulated_micro_batches_match_data_parallel_ranks(
        one_object_coco, tmp_path, fake_srun):
    runs = {}
    for processes in (1, 2, 4):
        micro_steps = SAMPLES_PER_STEP // processes
        work_dir = tmp_path / f'{processes}x{micro_steps}'
        cfg = accumulation_cfg(one_object_coco, work_dir, micro_steps)
        if processes == 1:
            build_runner(cfg).train()
        else:
            cfg_path = tmp_path / f'{processes}x{micro_steps}.py'
            cfg.dump(str(cfg_path))
            if processes == 2:
                launch(
                    'slurm_train.sh',
                    ['cpu', 'accumulation', cfg_path, work_dir],
                    dict(
                        SRUN_LOG=str(tmp_path / 'srun.log'),
                        MASTER_PORT=str(free_port()),
                        GPUS='2',
                        GPUS_PER_NODE='2'),
                    path=[fake_srun])
            else:
                launch('dist_train.sh', [cfg_path, processes],
                       dict(PORT=str(free_port())))
        runs[f'{processes}x{micro_steps}'] = optimizer_steps(
            work_dir, processes, micro_steps)

    (steps, lora), *others = runs.values()
    assert len(steps) == STEPS and {task
                                    for task, _ in steps
                                    } == {'caption', 'detection'}
    assert all(len(samples) == SAMPLES_PER_STEP for _, samples in steps)
    assert any(v.abs().sum() > 0 for k, v in lora.items()
               if k.endswith('lora_B'))
    for other_steps, other_lora in others:
        assert other_steps == steps
        for key, value in lora.items():
            torch.testing.assert_close(
                other_lora[key], value, rtol=1e-5, atol=1e-7)
