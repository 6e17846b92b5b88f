"""Every ViSFT config parses; the eva_1b/eva_4b configs carry the paper's
settings and build (with a tiny ViT standing in for the 1B/4.4B one)."""
from pathlib import Path

import pytest
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.losses import FocalLoss
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tiny import with_tiny_vit

from visft_mm.analysis.synthetic import train_dataloaders
from visft_mm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks in other scopes have their own tests (tests/test_eval_*.py).
EVAL = ROOT / 'configs/visft/eval'
CONFIGS = sorted(
    p for p in (ROOT / 'configs/visft').rglob('*.py') if EVAL not in p.parents)
PAPER = [p for p in CONFIGS if p.name.startswith('eva_')]


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_parses_in_the_visft_scope(path):
    cfg = load(path)
    assert cfg.default_scope == 'visft_mm'
    assert cfg.model.type == 'ViSFT'
    assert set(cfg.model.tasks) <= {'detection', 'segmentation', 'caption'}


def test_required_entry_point_exists():
    assert (ROOT / 'configs/visft/eva_4b_stage2.py').is_file()


@pytest.mark.parametrize('gpus', ['', '_1xb8'])
@pytest.mark.parametrize('size,arch,width', [('1b', 'eva-g', 1408),
                                             ('4b', 'eva-e', 1792)])
def test_stage2_has_the_paper_settings(size, arch, width, gpus):
    cfg = load(ROOT / f'configs/visft/eva_{size}_stage2{gpus}.py')
    backbone = cfg.model.backbone
    assert (backbone.type == 'LoRAModel' and backbone.rank == 64
            and backbone.alpha == 1)
    assert backbone.targets == [dict(type='qkv', slices='qv')]
    assert backbone.module.type == 'visft_mm.FrozenBackbone'
    assert backbone.module.module.arch == arch
    assert backbone.module.module.with_cp
    assert cfg.model.freeze_tasks
    assert cfg.train_cfg.type == 'MultiTaskTrainLoop'
    assert cfg.train_cfg.task_ratios == dict(
        caption=0.4, segmentation=0.3, detection=0.3)
    assert cfg.train_cfg.max_iters == 100000
    assert {
        k: v.batch_size
        for k, v in cfg.train_dataloader.items()
    } == dict(
        caption=8, segmentation=1, detection=1)
    assert cfg.optim_wrapper.optimizer.lr == 1e-5
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert cfg.param_scheduler[0].end == 2000
    tasks = cfg.model.tasks
    assert tasks.detection.neck.in_channels == [width]
    assert tasks.segmentation.panoptic_head.in_channels == [width]
    assert tasks.caption.head.in_channels == width
    assert set(cfg.model.task_checkpoints) == {
        'caption', 'segmentation', 'detection'
    }


@pytest.mark.parametrize('path', PAPER, ids=lambda p: p.name)
def test_paper_config_augments_each_draw_under_its_own_seed(path):
    """Their loaders augment in data workers, which a resume restarts: only
    a seed per draw keeps the resumed run's augmentation exact."""
    for loader in train_dataloaders(load(path)).values():
        assert loader.num_workers > 0
        assert loader.sampler.type == 'NumberedInfiniteSampler'
        assert loader.dataset.type == 'SeedPerDrawDataset'


@pytest.mark.parametrize('size', ['1b', '4b'])
def test_one_gpu_stage2_takes_the_eight_gpu_steps(size):
    """8 accumulated micro-batches of the per-GPU batch make the 8-GPU global
    batch; everything counted in optimizer steps stays the 8-GPU run's."""
    eight_gpus = load(ROOT / f'configs/visft/eva_{size}_stage2.py')
    one_gpu = load(ROOT / f'configs/visft/eva_{size}_stage2_1xb8.py')
    assert eight_gpus.optim_wrapper.get('accumulative_counts', 1) == 1
    assert one_gpu.optim_wrapper.pop('accumulative_counts') == 8
    for key in ('model', 'train_dataloader', 'optim_wrapper',
                'param_scheduler', 'train_cfg', 'default_hooks',
                'log_processor', 'randomness'):
        assert one_gpu.get(key) == eight_gpus.get(key), key


@pytest.mark.parametrize('task,lr,iters',
                         [('detr_8xb1-150k', 5e-5, 150000),
                          ('unit-detr_official_8xb1-150k', 5e-5, 150000),
                          ('mask2former_8xb1-150k', 5e-5, 150000),
                          ('mask2former_official_8xb1-150k', 5e-5, 150000),
                          ('caption_8xb32-100k', 4e-4, 100000)])
def test_stage1_has_the_paper_settings(task, lr, iters):
    for size in ('1b', '4b'):
        cfg = load(ROOT / f'configs/visft/eva_{size}_stage1_{task}_coco.py')
        assert cfg.model.backbone.type == 'visft_mm.FrozenBackbone'
        assert cfg.model.backbone.module.arch == ('eva-g'
                                                  if size == '1b' else 'eva-e')
        assert cfg.optim_wrapper.optimizer.lr == lr
        assert cfg.train_cfg.max_iters == iters
        assert cfg.param_scheduler[-1].end == iters


@pytest.mark.parametrize('path', PAPER, ids=lambda p: p.name)
def test_paper_config_builds_with_a_tiny_vit(path, demo_coco, tmp_path):
    """The whole model of each paper config, with the ViT swapped for a tiny
    one."""
    model = with_tiny_vit(
        load(path).model,
        tmp_path,
        vocab_file=str(demo_coco / 'annotations/vocab.json'))
    tasks = model.tasks
    init_default_scope('visft_mm')
    built = MODELS.build(model)
    assert sorted(built.task_names) == sorted(tasks)
    # mmcv's and mmdet's own classes call compiled kernels that a CPU-ops mmcv
    # lacks on a GPU
    assert not [
        m for m in built.modules()
        if type(m) in (MultiScaleDeformableAttention, FocalLoss)
    ]
