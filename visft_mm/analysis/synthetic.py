"""What a ViSFT config feeds each task per GPU, and synthetic batches of that
size.

Written here because the analysis tools must run a config's model on its
real input sizes with no dataset or checkpoint on disk, and no OpenMMLab
package derives input sizes from a training pipeline. Sizes come from the
config itself: each task's train dataloader (per-GPU batch size) and the
largest image its pipeline can produce (resizes and crops); the data
preprocessor, which runs on these batches as in training, pads them further.
Batches look like a dataloader's output (``pseudo_collate`` of packed
samples): uint8 images plus data samples with random boxes, masks or captions.
"""
import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData
from mmpretrain.structures import DataSample

from visft_mm.datasets.caption_vocab import (END, PAD, START, UNK,
                                             WordVocabulary)
from visft_mm.models.backbones import EVAViT
from visft_mm.models.detectors.unit_detr import COCO_CATEGORY_IDS

# Karpathy-COCO word map of the official caption head
# (WORDMAP_coco_5_cap_per_img_5_min_word_freq).
OFFICIAL_VOCAB_SIZE = 9490
# COCO train2017 averages 7.3 instances per image and Karpathy captions about
# 10.5 words.
OBJECTS_PER_IMAGE = 7
CAPTION_WORDS = 10

ImageShape = Tuple[int, int]


@dataclass(frozen=True)
class TaskInput:
    """One GPU's training batch of a task: ``batch_size`` images of at most
    ``image_shape`` (h, w) pixels, with captions, or with boxes of
    ``num_classes`` classes and, ``with_masks``, instance masks."""
    task: str
    batch_size: int
    image_shape: ImageShape
    with_masks: bool
    with_captions: bool
    num_classes: int = 1


def synthetic_vocabulary(size: int = OFFICIAL_VOCAB_SIZE) -> WordVocabulary:
    """A word map of ``size`` entries (the four special tokens included)
    whose words are ``word1``, ``word2``, ..."""
    word_map = {f'word{i}': i for i in range(1, size - 3)}
    word_map.update({UNK: size - 3, START: size - 2, END: size - 1, PAD: 0})
    return WordVocabulary(word_map)


def model_config_without_files(model_cfg: dict) -> ConfigDict:
    """``model_cfg`` built from nothing on disk: no pretrained weights (a
    ``FrozenBackbone`` keeps random ones), no stage-1 task checkpoints, and a
    synthetic word map of the official size in place of each caption head's
    ``vocab_file``."""
    cfg = ConfigDict(copy.deepcopy(model_cfg))
    cfg.pop('task_checkpoints', None)

    def strip(node):
        if isinstance(node, dict):
            init_cfg = node.get('init_cfg')
            if isinstance(init_cfg,
                          dict) and init_cfg.get('type') == 'Pretrained':
                node['init_cfg'] = None
            if str(node.get('type', '')).endswith('FrozenBackbone'):
                node['random_weights'] = True
            if 'vocab_file' in node:
                node.pop('vocab_file')
                node['vocab'] = synthetic_vocabulary(
                    node.get('vocab_size') or OFFICIAL_VOCAB_SIZE)
            for value in node.values():
                strip(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                strip(value)

    strip(cfg)
    return cfg


# Small EVAViT archs for runs on a CPU (widths divisible by their head counts).
SMALL_ARCHS = {
    'tiny':
    dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128),
    'small':
    dict(embed_dims=384, num_layers=6, num_heads=6, feedforward_channels=1536),
    'base':
    dict(
        embed_dims=768, num_layers=12, num_heads=12,
        feedforward_channels=3072),
}


def vit_config(backbone_cfg: dict) -> dict:
    """The ViT's config inside a backbone config: the innermost ``module`` of
    its wrappers (``LoRAModel``, ``FrozenBackbone``), or itself."""
    while 'module' in backbone_cfg:
        backbone_cfg = backbone_cfg['module']
    return backbone_cfg


def with_backbone_arch(model_cfg: dict, arch: Union[str, dict]) -> ConfigDict:
    """``model_cfg`` with its EVAViT (:func:`vit_config`) set to ``arch`` (a
    name of ``SMALL_ARCHS`` or ``EVAViT.arch_zoo``, or a dict), and every
    task's input width set to match."""
    cfg = ConfigDict(copy.deepcopy(model_cfg))
    arch = SMALL_ARCHS.get(arch, arch) if isinstance(arch, str) else dict(arch)
    width = (EVAViT.arch_zoo[arch]
             if isinstance(arch, str) else arch)['embed_dims']
    vit = vit_config(cfg.backbone)
    vit.arch = arch
    for task in cfg.tasks.values():
        if 'neck' in task:
            task.neck.in_channels = [width]
        if 'panoptic_head' in task:
            task.panoptic_head.in_channels = [width]
        if task.type.rsplit('.', 1)[-1] == 'ImageCaptioner':
            task.head.in_channels = width
    return cfg


def train_dataloaders(cfg: Config) -> Dict[str, dict]:
    """Task name → train dataloader config: the dict of a multi-task config,
    or the single loader of a one-task (stage-1) config."""
    tasks = list(cfg.model.tasks)
    loader = cfg.train_dataloader
    if set(loader) <= set(tasks) and all(
            isinstance(v, dict) for v in loader.values()):
        return dict(loader)
    if len(tasks) != 1:
        raise ValueError(
            f'train_dataloader is one loader but the model has tasks {tasks}')
    return {tasks[0]: loader}


def task_ratios(cfg: Config) -> Dict[str, float]:
    """Task name → share of iterations: ``train_cfg.task_ratios``
    normalised, or 1 for the only task of a one-task config."""
    ratios = cfg.train_cfg.get('task_ratios') or {
        task: 1.0
        for task in train_dataloaders(cfg)
    }
    total = float(sum(ratios.values()))
    return {task: ratio / total for task, ratio in ratios.items()}


def _area(shape: ImageShape) -> int:
    return shape[0] * shape[1]


def _resized(transform: dict, scales: Sequence) -> ImageShape:
    """The largest (h, w) a resize to any of ``scales`` gives: a keep-ratio
    resize bounds the long side by max(scale) and the short side by
    min(scale); otherwise ``scale`` is mmcv's (w, h)."""
    ratio = max(transform.get('ratio_range') or (1.0, 1.0))
    shapes = []
    for scale in scales:
        w, h = (int(s * ratio) for s in scale)
        shapes.append((min(w, h),
                       max(w, h)) if transform.get('keep_ratio') else (h, w))
    return max(shapes, key=_area)


def _cropped(transform: dict,
             shape: Optional[ImageShape]) -> Optional[ImageShape]:
    """The largest (h, w) of mmdet's ``RandomCrop``: an absolute crop_size is
    (w, h), an absolute range bounds both sides; relative crops only shrink."""
    crop_type = transform.get('crop_type', 'absolute')
    if shape is None or crop_type not in ('absolute', 'absolute_range'):
        return shape
    size = transform['crop_size']
    limit = (size[1], size[0]) if crop_type == 'absolute' else (max(size),
                                                                max(size))
    return min(shape[0], limit[0]), min(shape[1], limit[1])


def largest_image_shape(
        pipeline: Sequence[dict],
        shape: Optional[ImageShape] = None) -> Optional[ImageShape]:
    """The largest (h, w) image ``pipeline`` can produce: its resizes
    (``Resize``, ``RandomResize``, ``RandomChoiceResize``), ``RandomCrop``
    and the branches of ``RandomChoice``; None if nothing sets a size."""
    for transform in pipeline:
        kind = transform['type'].rsplit('.', 1)[-1]
        if kind == 'RandomChoice':
            branches = [
                largest_image_shape(branch, shape)
                for branch in transform['transforms']
            ]
            shape = max((s for s in branches if s is not None),
                        key=_area,
                        default=shape)
        elif kind in ('Resize', 'RandomResize'):
            shape = _resized(transform, [transform['scale']])
        elif kind == 'RandomChoiceResize':
            shape = _resized(transform, transform['scales'])
        elif kind == 'RandomCrop':
            shape = _cropped(transform, shape)
    return shape


def _num_classes(task_model: dict) -> int:
    """How many (contiguous) labels the task's targets take."""
    for head in ('bbox_head', 'panoptic_head'):
        head_cfg = task_model.get(head) or {}
        if head_cfg.get('type', '').endswith('UniTDETRHead'):
            # its num_classes counts classifier rows (raw category ids)
            return len(head_cfg.get('category_ids', COCO_CATEGORY_IDS))
        for key in ('num_classes', 'num_things_classes'):
            if key in head_cfg:
                return head_cfg[key]
    return 1


def train_pipeline(loader: dict) -> List[dict]:
    """The pipeline of a loader's dataset, inside any dataset wrappers
    (``SeedPerDrawDataset``, ``RepeatDataset``)."""
    dataset = loader.dataset
    while 'pipeline' not in dataset:
        dataset = dataset.dataset
    return dataset.pipeline


def task_inputs(cfg: Config) -> Dict[str, TaskInput]:
    """Every task's per-GPU training batch, read from the config."""
    inputs = {}
    for task, loader in train_dataloaders(cfg).items():
        pipeline = train_pipeline(loader)
        shape = largest_image_shape(pipeline)
        if shape is None:
            raise ValueError(f'the {task!r} train pipeline sets no image size '
                             '(no Resize, RandomResize or RandomChoiceResize)')
        annotations = [
            t for t in pipeline if t['type'].endswith('LoadAnnotations')
        ]
        packs = [t for t in pipeline if t['type'].endswith('PackInputs')]
        inputs[task] = TaskInput(
            task=task,
            batch_size=loader.batch_size,
            image_shape=shape,
            with_masks=any(t.get('with_mask', False) for t in annotations),
            with_captions=any('gt_caption' in t.get('algorithm_keys', ())
                              for t in packs),
            num_classes=_num_classes(cfg.model.tasks[task]))
    return inputs


def _random_boxes(generator: torch.Generator, count: int,
                  shape: ImageShape) -> torch.Tensor:
    """``count`` xyxy boxes inside an (h, w) image, each side 5-50% of the
    image's."""
    h, w = shape
    size = torch.rand(count, 2, generator=generator) * 0.45 + 0.05
    corner = torch.rand(count, 2, generator=generator) * (1 - size)
    xyxy = torch.cat([corner, corner + size], dim=1)
    return xyxy * torch.tensor([w, h, w, h], dtype=torch.float32)


def _detection_sample(task_input: TaskInput, index: int,
                      generator: torch.Generator) -> DetDataSample:
    h, w = task_input.image_shape
    sample = DetDataSample(
        metainfo=dict(
            img_id=index,
            img_path='',
            ori_shape=(h, w),
            img_shape=(h, w),
            scale_factor=(1., 1.),
            flip=False,
            flip_direction=None))
    boxes = _random_boxes(generator, OBJECTS_PER_IMAGE, (h, w))
    instances = InstanceData(
        bboxes=boxes,
        labels=torch.randint(
            task_input.num_classes, (OBJECTS_PER_IMAGE, ),
            generator=generator))
    if task_input.with_masks:
        masks = np.zeros((OBJECTS_PER_IMAGE, h, w), dtype=np.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            mask[y1:y2 + 1, x1:x2 + 1] = 1
        instances.masks = BitmapMasks(masks, h, w)
    sample.gt_instances = instances
    return sample


def _caption_sample(task_input: TaskInput, index: int, words: Sequence[str],
                    generator: torch.Generator) -> DataSample:
    h, w = task_input.image_shape
    picks = torch.randint(len(words), (CAPTION_WORDS, ), generator=generator)
    caption = ' '.join(words[i] for i in picks.tolist())
    return DataSample(
        metainfo=dict(
            image_id=index, img_path='', ori_shape=(h, w), img_shape=(h, w)),
        gt_caption=caption)


def caption_vocabulary(task_model: nn.Module) -> Optional[WordVocabulary]:
    """The word map of a caption task model's head; None for other tasks."""
    return getattr(getattr(task_model, 'head', None), 'vocab', None)


def synthetic_batch(task_input: TaskInput,
                    seed: int = 0,
                    vocabulary: Optional[WordVocabulary] = None) -> dict:
    """A collated training batch of ``task_input``'s size, as the task's
    dataloader yields it (uint8 CHW images, data samples), with ``task`` set.
    Captions are drawn from the words of ``vocabulary``."""
    generator = torch.Generator().manual_seed(seed)
    if task_input.with_captions:
        if vocabulary is None:
            raise ValueError(
                f'task {task_input.task!r} has captions: give its vocabulary')
        words = [
            w for i, w in sorted(vocabulary.id_to_word.items())
            if i not in vocabulary.special_ids
        ]
    h, w = task_input.image_shape
    images: List[torch.Tensor] = []
    samples = []
    for index in range(task_input.batch_size):
        images.append(
            torch.randint(
                256, (3, h, w), dtype=torch.uint8, generator=generator))
        if task_input.with_captions:
            samples.append(
                _caption_sample(task_input, index, words, generator))
        else:
            samples.append(_detection_sample(task_input, index, generator))
    return dict(inputs=images, data_samples=samples, task=task_input.task)
