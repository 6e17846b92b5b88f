"""Shared fixtures: a generated demo COCO dataset, tiny ViSFT task configs, and
what the multi-process tests launch with (an srun stand-in, a free port)."""
import copy
import socket
from typing import Optional

import pytest
from mmengine.hub import get_config

from visft_mm.analysis.synthetic import with_backbone_arch
from visft_mm.datasets.demo_coco import DEMO_CLASSES, generate_demo_coco

TINY_VIT = dict(
    embed_dims=48, num_layers=2, num_heads=4, feedforward_channels=96)
IMG = 112
NORM = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)


def with_tiny_vit(model: dict, vocab_file: Optional[str] = None) -> dict:
    """A paper config's ViSFT model with the ViT swapped for TINY_VIT (no
    pretrained weights, no stage-1 checkpoints) and the heads narrowed to
    it."""
    model = with_backbone_arch(model, TINY_VIT)
    vit = (
        model.backbone.module
        if model.backbone.type == 'LoRAModel' else model.backbone)
    vit.init_cfg = None
    if vocab_file is not None and 'caption' in model.tasks:
        model.tasks.caption.head.vocab_file = vocab_file
    model.pop('task_checkpoints', None)
    return model


@pytest.fixture(scope='session')
def demo_coco(tmp_path_factory):
    """A small demo dataset (8 train, 4 val images), generated once per
    session."""
    root = tmp_path_factory.mktemp('demo_coco')
    generate_demo_coco(str(root), num_train=8, num_val=4, img_size=IMG, seed=0)
    return root


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


def tiny_caption_cfg(root):
    """A small Show-Attend-Tell captioner on the demo word map, without
    dropout."""
    return dict(
        type='ImageCaptioner',
        data_preprocessor=dict(type='ImgDataPreprocessor', **NORM),
        head=dict(
            type='ShowAttendTellHead',
            in_channels=TINY_VIT['embed_dims'],
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


# srun's stand-in: records its arguments in $SRUN_LOG, then runs the command as
# --ntasks local tasks with the environment srun gives each task.
FAKE_SRUN = (r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$SRUN_LOG"
while [[ $1 == -* ]]; do
    case $1 in
        --ntasks=*) NTASKS=${1#*=} ;;
        -p) shift ;;
    esac
    shift
done
pids=()
for ((rank = 0; rank < NTASKS; rank++)); do
    SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NTASKS=$NTASKS '''
             r'''SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
''')


@pytest.fixture
def fake_srun(tmp_path):
    """A folder holding an executable ``srun`` stand-in, to put first on
    PATH."""
    bin_dir = tmp_path / 'fake_bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    return bin_dir


def free_port() -> int:
    """A TCP port that is free now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
