"""Shared helpers of the tests: tiny EVA-ViT archs, tiny task-head, loader and
ViSFT configs on the generated demo COCO data, a free port for process groups,
and a runner for the repository's scripts."""
import contextlib
import copy
import importlib.util
import io
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

from visft_mm.analysis.synthetic import vit_config, with_backbone_arch
from visft_mm.checkpoints.io import save_atomic
from visft_mm.demo.demo_coco import DEMO_CLASSES
from visft_mm.models import EVAViT
from visft_mm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
# The ViT whose features the task heads of the ViSFT tests read.
TINY_VIT = dict(
    embed_dims=48, num_layers=2, num_heads=4, feedforward_channels=96)
# A narrower one for the checkpoint, LoRA and pretraining tests.
NARROW_VIT = dict(
    embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64)
IMG = 112
# ImageNet statistics on the 0..255 scale, RGB, as ViSFT normalises every task.
NORM = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)
# Captions at 256 px with the metadata CaptionMetric and the dataset tests
# read.
CAPTION_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(
        type='mmpretrain.PackInputs',
        algorithm_keys=['gt_caption'],
        meta_keys=[
            'image_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'
        ]),
]


def tiny_vit_checkpoint(directory,
                        arch: dict = TINY_VIT,
                        pretrain_img_size: int = IMG) -> str:
    """The pretrained weights of a tiny frozen backbone: a checkpoint of an
    EVAViT of ``arch`` initialised from seed 0 (the global seed untouched),
    written to ``directory`` on first use."""
    path = Path(directory) / (
        f'eva_{arch["embed_dims"]}x'
        f'{arch["num_layers"]}_{pretrain_img_size}px.pth')
    if not path.exists():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            vit = EVAViT(arch=arch, pretrain_img_size=pretrain_img_size)
            vit.init_weights()
        save_atomic(vit.state_dict(), path)
    return str(path)


def frozen_tiny_vit(directory,
                    arch: dict = TINY_VIT,
                    pretrain_img_size: int = IMG,
                    **vit_kwargs) -> dict:
    """Config of a FrozenBackbone of an EVAViT of ``arch`` that loads
    :func:`tiny_vit_checkpoint` from ``directory``."""
    checkpoint = tiny_vit_checkpoint(directory, arch, pretrain_img_size)
    return dict(
        type='FrozenBackbone',
        module=dict(
            type='EVAViT',
            arch=arch,
            pretrain_img_size=pretrain_img_size,
            init_cfg=dict(type='Pretrained', checkpoint=checkpoint),
            **vit_kwargs))


def with_tiny_vit(model: dict,
                  directory,
                  vocab_file: Optional[str] = None) -> dict:
    """A paper config's ViSFT model with the ViT swapped for TINY_VIT (its
    pretrained weights a :func:`tiny_vit_checkpoint` in ``directory``, no
    stage-1 checkpoints) and the heads narrowed to it."""
    model = with_backbone_arch(model, TINY_VIT)
    vit = vit_config(model.backbone)
    vit.init_cfg = dict(
        type='Pretrained',
        checkpoint=tiny_vit_checkpoint(directory, TINY_VIT,
                                       vit.get('pretrain_img_size', 224)))
    if vocab_file is not None and 'caption' in model.tasks:
        model.tasks.caption.head.vocab_file = vocab_file
        # the official word map's size does not hold for another word map
        model.tasks.caption.head.pop('vocab_size', None)
    model.pop('task_checkpoints', None)
    return model


def tiny_detection_cfg():
    model = copy.deepcopy(
        get_config('mmdet::detr/detr_r50_8xb2-150e_coco.py').model)
    model.pop('backbone')
    model.data_preprocessor.update(pad_size_divisor=14, **NORM)
    model.neck.in_channels = [TINY_VIT['embed_dims']]
    model.num_queries = 10
    model.encoder.num_layers = model.decoder.num_layers = 1
    model.bbox_head.num_classes = len(DEMO_CLASSES)
    model.test_cfg.max_per_img = 10
    return model


def tiny_segmentation_cfg():
    model = copy.deepcopy(
        get_config(
            'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py').model)
    model.pop('backbone')
    model.data_preprocessor.update(
        pad_size_divisor=14, batch_augments=None, **NORM)
    num_classes = len(DEMO_CLASSES)
    head = model.panoptic_head
    head.update(
        in_channels=[TINY_VIT['embed_dims']],
        strides=[14],
        num_queries=10,
        num_things_classes=num_classes,
        num_transformer_feat_level=1,
        num_stuff_classes=0)
    head.pixel_decoder.num_outs = 1
    head.pixel_decoder.encoder.num_layers = 1
    head.pixel_decoder.encoder.layer_cfg.self_attn_cfg.num_levels = 1
    head.transformer_decoder.num_layers = 1
    head.loss_cls.class_weight = [1.0] * num_classes + [0.1]
    model.panoptic_fusion_head.update(
        num_things_classes=num_classes, num_stuff_classes=0)
    model.train_cfg.num_points = 64
    model.test_cfg.update(
        panoptic_on=False,
        semantic_on=False,
        instance_on=True,
        max_per_image=10)
    return model


def tiny_caption_cfg(root, in_channels: int = TINY_VIT['embed_dims']):
    """A small Show-Attend-Tell captioner on the demo word map, without
    dropout."""
    return dict(
        type='ImageCaptioner',
        data_preprocessor=dict(type='ImgDataPreprocessor', **NORM),
        head=dict(
            type='ShowAttendTellHead',
            in_channels=in_channels,
            vocab_file=str(root / 'annotations/vocab.json'),
            attention_dim=32,
            embed_dim=32,
            decoder_dim=32,
            dropout=0.0,
            encoded_size=4))


def demo_det_dataloader(root,
                        split: str,
                        batch_size: int = 2,
                        train: bool = True) -> dict:
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(IMG, IMG), keep_ratio=True),
        *([dict(type='RandomFlip', prob=0.5)] if train else []),
        dict(type='PackDetInputs')
    ]
    sampler = (
        dict(type='InfiniteSampler', shuffle=True) if train else dict(
            type='DefaultSampler', shuffle=False))
    return dict(
        batch_size=batch_size,
        num_workers=0,
        sampler=sampler,
        dataset=dict(
            type='CocoDataset',
            data_root=str(root),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            metainfo=dict(classes=DEMO_CLASSES),
            filter_cfg=dict(filter_empty_gt=train),
            pipeline=pipeline,
            test_mode=not train))


def demo_caption_dataloader(root,
                            batch_size: int = 1,
                            sampler: Optional[dict] = None) -> dict:
    """The demo train captions, one item per caption, on IMG x IMG images;
    shuffled by an InfiniteSampler unless ``sampler`` says otherwise."""
    return dict(
        batch_size=batch_size,
        num_workers=0,
        sampler=sampler or dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            type='CocoCaptionDataset',
            data_root=str(root),
            ann_file='annotations/captions_train.json',
            data_prefix=dict(img_path='train/'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(IMG, IMG), keep_ratio=False),
                dict(
                    type='mmpretrain.PackInputs',
                    algorithm_keys=['gt_caption'])
            ]))


def stage2_schedule(lr: float, max_iters: int, micro_steps: int) -> dict:
    """Stage 2's optimisation: AdamW with clipping, ``micro_steps`` batches
    per step, linear warmup over 2 iterations then cosine to
    ``max_iters``."""
    return dict(
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4),
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
        ])


def stage2_cfg(root,
               work_dir,
               max_iters=6,
               val_interval=1000,
               extra_hooks=(),
               micro_steps=1):
    """Stage 2 on the demo data: LoRA on TINY_VIT under frozen detection and
    segmentation heads, validated on both, checkpointed every 3
    iterations."""
    vit = frozen_tiny_vit(Path(work_dir) / 'pretrained')
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
            **stage2_schedule(1e-2, max_iters, micro_steps),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=3, by_epoch=False),
                logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=[dict(type='RandomStateHook'), *extra_hooks],
            log_processor=dict(by_epoch=False),
            log_level='WARNING'))


def tiny_visft_cfg(stage: int, directory, task_checkpoints=None) -> dict:
    """Config of a tiny ViSFT (detection and segmentation) of stage 1 (frozen
    ViT) or stage 2 (LoRA in the frozen ViT, frozen task models); the ViT's
    weights are a :func:`tiny_vit_checkpoint` in ``directory``."""
    frozen_vit = frozen_tiny_vit(directory)
    backbone = frozen_vit if stage == 1 else dict(
        type='LoRAModel', module=frozen_vit, rank=4, alpha=4)
    return dict(
        type='ViSFT',
        backbone=backbone,
        tasks=dict(
            detection=tiny_detection_cfg(),
            segmentation=tiny_segmentation_cfg()),
        freeze_tasks=stage == 2,
        task_checkpoints=task_checkpoints)


def build_visft(stage: int, directory, task_checkpoints=None):
    """The :func:`tiny_visft_cfg` model, initialised from seed 0."""
    init_default_scope('visft_mm')
    cfg = tiny_visft_cfg(stage, directory, task_checkpoints)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def free_port() -> int:
    """A TCP port that is free now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_script(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """Runs a Python script of the repository (path and arguments) in a child
    process from ``cwd`` (the repository root unless given), with this
    checkout first on PYTHONPATH."""
    env = {
        **os.environ, 'PYTHONPATH':
        os.pathsep.join([str(ROOT),
                         os.environ.get('PYTHONPATH', '')])
    }
    return subprocess.run([sys.executable, *map(str, args)],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)


def run_script_in_process(script, *args) -> subprocess.CompletedProcess:
    """Runs a script of the repository as ``python SCRIPT ARGS`` from the
    repository root would, but in this process, whose imports are already
    loaded (seconds less than :func:`run_script` per run): its exit status
    and output. A ``sys.exit`` message goes to stderr with status 1, as the
    interpreter does; any other exception propagates."""
    argv = [str(script), *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    saved_argv, sys.argv = sys.argv, argv
    try:
        with contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(str(ROOT / script), run_name='__main__')
            except SystemExit as exit_:
                status = exit_.code or 0
                if not isinstance(status, int):
                    print(status, file=sys.stderr)
                    status = 1
    finally:
        sys.argv = saved_argv
    return subprocess.CompletedProcess(argv, status, stdout.getvalue(),
                                       stderr.getvalue())


def assert_single_error(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed tool run, which printed no
    traceback."""
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    error_lines = [
        line for line in result.stderr.splitlines()
        if line.startswith('error:')
    ]
    assert len(error_lines) == 1, result.stderr
    return error_lines[0]


def import_script(path):
    """A script of the repository (e.g. tools/misc/run_demo.py) as a module,
    to call its functions."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
