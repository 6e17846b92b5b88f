"""The paper configs as they ship, at tiny width: the demo data in the layout
they read under data/coco/, the config shrunk to a tiny ViT and small images,
and a hook recording what each training iteration changed."""
import json
import math
import shutil
from pathlib import Path

import torch
import torch.nn as nn
from mmdet.datasets import CocoDataset
from mmengine.config import Config
from mmengine.hooks import Hook
from tiny import ROOT, with_tiny_vit

from visft_mm.analysis.synthetic import train_dataloaders
from visft_mm.demo.demo_coco import generate_demo_coco
from visft_mm.engine import sample_task
from visft_mm.registry import HOOKS
from visft_mm.utils.cli import build_runner

CONFIGS = ROOT / 'configs/visft'
COCO_CLASSES = CocoDataset.METAINFO['classes']


def autocast_supported(dtype: torch.dtype) -> bool:
    try:
        with torch.autocast('cpu', dtype=dtype):
            return nn.Linear(2, 2)(torch.ones(1, 2)).dtype == dtype
    except RuntimeError:
        return False


def write_paper_coco(tmp_path_factory) -> Path:
    """The demo dataset in the layout the paper configs read under data/coco/:
    train2017/, val2017/, instances_*2017.json, the Karpathy dataset_coco.json
    and the caption word map."""
    demo = tmp_path_factory.mktemp('demo')
    generate_demo_coco(str(demo), num_train=4, num_val=2, img_size=112, seed=0)
    root = tmp_path_factory.mktemp('coco')
    annotations = root / 'annotations'
    annotations.mkdir()
    karpathy = []
    for split in ('train', 'val'):
        shutil.copytree(demo / split, root / f'{split}2017')
        instances = json.loads(
            (demo / f'annotations/instances_{split}.json').read_text())
        for category, name in zip(instances['categories'], COCO_CLASSES):
            category['name'] = name  # the configs keep COCO's class names
        (annotations / f'instances_{split}2017.json').write_text(
            json.dumps(instances))
        captions = json.loads(
            (demo / f'annotations/captions_{split}.json').read_text())
        for image in captions['images']:
            sentences = [
                a['caption'] for a in captions['annotations']
                if a['image_id'] == image['id']
            ]
            karpathy.append(
                dict(
                    filepath=f'{split}2017',
                    filename=image['file_name'],
                    split=split,
                    cocoid=image['id'],
                    sentences=[dict(raw=s) for s in sentences]))
    (annotations / 'dataset_coco.json').write_text(
        json.dumps(dict(images=karpathy)))
    shutil.copy(
        demo / 'annotations/vocab.json',
        annotations / 'WORDMAP_coco_5_cap_per_img_5_min_word_freq.json')
    return root


def relocated(value, old: str, new: str):
    """``value`` with every string that starts with ``old`` rebased on
    ``new``."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, dict):
        return type(value)({
            k: relocated(v, old, new)
            for k, v in value.items()
        })
    if isinstance(value, (list, tuple)):
        return type(value)(relocated(v, old, new) for v in value)
    return value


def shrunk(value, factor: int = 8, is_size: bool = False):
    """Image sizes (the values of :data:`SIZE_KEYS`, in pipelines and batch
    augments) divided by ``factor``: the same transforms at a size that CPUs
    without native bf16 GEMMs run in seconds."""
    if isinstance(value, dict):
        return type(value)({
            k: shrunk(v, factor, k in SIZE_KEYS)
            for k, v in value.items()
        })
    if isinstance(value, (list, tuple)):
        return type(value)(shrunk(v, factor, is_size) for v in value)
    if is_size and isinstance(value, int):
        return max(1, value // factor)
    return value


# pipelines' resize and crop sizes; BatchFixedSizePad's padded size
SIZE_KEYS = ('scale', 'scales', 'crop_size', 'size')


def tiny_paper_config(name: str, coco_root: Path, work_dir: Path) -> Config:
    """A paper config as it ships, but with a tiny ViT, images 8 times
    smaller, the test data, no data workers, one iteration and no
    validation."""
    cfg = Config.fromfile(str(CONFIGS / name)).to_dict()
    cfg['train_dataloader'] = shrunk(cfg['train_dataloader'])
    cfg['model'] = shrunk(cfg['model'])  # the fixed-size batch padding
    cfg = Config(relocated(cfg, 'data/coco/', f'{coco_root}/'))
    # stage 2 starts from random heads here
    cfg.model = with_tiny_vit(cfg.model, work_dir / 'pretrained')
    for loader in train_dataloaders(cfg).values():
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_cfg.update(max_iters=1, val_begin=2)
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    cfg.custom_hooks = [
        *cfg.get('custom_hooks', []),
        dict(type='RecordStepsForTest')
    ]
    return cfg


@HOOKS.register_module(force=True)
class RecordStepsForTest(Hook):
    """Records each iteration's task, losses and the tensors it changed."""

    def before_train(self, runner):
        self.last = snapshot(runner.model)
        self.steps = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        now = snapshot(runner.model)
        moved = sorted(k for k, v in now.items()
                       if not torch.equal(v, self.last[k]))
        self.steps.append(
            dict(
                task=data_batch.get('task'), losses=dict(outputs),
                moved=moved))
        self.last = now


def snapshot(model: nn.Module) -> dict:
    """Every parameter and buffer, frozen ones included (the state dict
    leaves the frozen backbone out)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {name: tensor.detach().clone() for name, tensor in named}


def run_training(cfg: Config) -> list:
    """Trains ``cfg``; the steps RecordStepsForTest saw."""
    runner = build_runner(cfg)
    runner.train()
    return next(h for h in runner.hooks
                if isinstance(h, RecordStepsForTest)).steps


def assert_finite_losses(step: dict, task: str):
    losses = step['losses']
    assert any(key.startswith(f'{task}.') for key in losses), losses
    assert all(math.isfinite(v.item()) for v in losses.values()), losses


def seed_drawing_every_task_first(tasks, ratios) -> int:
    """A seed whose first ``len(tasks)`` iterations draw each task once."""
    for seed in range(1000):
        if {sample_task(seed, i, tasks, ratios)
                for i in range(len(tasks))} == set(tasks):
            return seed
    raise AssertionError('no such seed')
