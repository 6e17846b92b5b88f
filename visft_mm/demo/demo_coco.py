"""A small COCO-style dataset of rendered shapes, for CPU demos and tests.

ViSFT's three heads (detection, instance segmentation, captioning) need COCO,
which is too large for a demo that trains in minutes on a CPU. These scenes
keep the COCO layout (``CocoDataset`` reads them unchanged) but are quick to
learn: flat-colored circles, squares, triangles and crosses on muted
gradient backgrounds, with captions that name each object's count, color
and shape. Output depends only on the arguments: same arguments, same bytes.

Masks are exact: each object is painted through the mask that pycocotools
rasterises from its stored polygon, objects never touch, and ``bbox`` and
``area`` are taken from that mask. Boxes may still overlap a little (IoU up
to ``MAX_BOX_IOU``).
"""
import colorsys
import itertools
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from visft_mm.datasets.caption_vocab import WordVocabulary

# Shapes are the COCO categories (ids 1..K in this order); colors only appear
# in captions.
DEMO_CLASSES = ('circle', 'square', 'triangle', 'cross')
PLURALS = {
    'circle': 'circles',
    'square': 'squares',
    'triangle': 'triangles',
    'cross': 'crosses'
}
COLORS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 40, 40),
    'green': (40, 170, 60),
    'blue': (40, 80, 220),
    'yellow': (235, 205, 40),
}
NUMBER_WORDS = {
    2: 'two',
    3: 'three',
    4: 'four',
    5: 'five',
    6: 'six',
    7: 'seven',
    8: 'eight',
    9: 'nine',
    10: 'ten'
}

SPLITS = ('train', 'val')
CIRCLE_VERTICES = 24
# largest side of an object's box, as a fraction of the image side
SIZE_RANGE = (0.20, 0.45)
# squares, triangles and crosses are turned by up to this much
MAX_ROTATION_DEG = 20.0
MAX_BOX_IOU = 0.2
# free pixels between two objects, so same-colored neighbours never merge
MIN_GAP_PX = 2
PLACEMENT_ATTEMPTS = 100
MIN_IMG_SIZE = 32
# 'gradient': the training and val images; 'checker': a shifted background
# for out-of-domain tests
BACKGROUNDS = ('gradient', 'checker')
CHECKER_CELL_PX = (6, 14)
CHECKER_CONTRAST = 0.25  # difference in HSV value of the two colors


@dataclass
class SceneObject:
    """One rendered object; ``polygon`` is the flat [x1, y1, ...] list stored
    as its segmentation, and ``bbox`` ([x, y, w, h]) and ``area`` are those of
    the pixels it covers."""
    shape: str
    color: str
    polygon: List[float]
    bbox: List[float]
    area: float


@dataclass
class SplitSummary:
    """What one split holds; prints as the tool's one-line report."""
    split: str
    images: int
    instances: int
    captions: int
    categories: int

    def __str__(self) -> str:
        return (
            f'{self.split}: {self.images} images, {self.instances} instances, '
            f'{self.captions} captions, {self.categories} categories')


def unit_outline(shape: str) -> np.ndarray:
    """(N, 2) vertices of ``shape`` centred at the origin, largest extent 1,
    y pointing down (image coordinates)."""
    if shape == 'circle':
        angles = 2 * np.pi * np.arange(CIRCLE_VERTICES) / CIRCLE_VERTICES
        return 0.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == 'square':
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    if shape == 'triangle':  # equilateral, apex up
        half_width = 0.5
        height = half_width * math.sqrt(3)
        return np.array([[0.0, -height / 2], [half_width, height / 2],
                         [-half_width, height / 2]])
    if shape == 'cross':  # a plus sign whose arms are a third of its span wide
        h = 1 / 6  # half the arm width
        return np.array([[-h, -0.5], [h, -0.5], [h, -h], [0.5, -h], [0.5, h],
                         [h, h], [h, 0.5], [-h, 0.5], [-h, h], [-0.5, h],
                         [-0.5, -h], [-h, -h]])
    raise ValueError(
        f'unknown shape {shape!r}; expected one of {DEMO_CLASSES}')


def sized_outline(shape: str, size: float, rotation_deg: float) -> np.ndarray:
    """Vertices of ``shape`` rotated, then scaled so its box's larger side is
    ``size`` pixels, with the box centred at the origin."""
    theta = math.radians(rotation_deg)
    rotation = np.array([[math.cos(theta), -math.sin(theta)],
                         [math.sin(theta), math.cos(theta)]])
    points = unit_outline(shape) @ rotation.T
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - (low + high) / 2) * (size / (high - low).max())


def rasterize(polygon: List[float], img_size: int) -> np.ndarray:
    """(H, W) bool mask of ``polygon`` exactly as pycocotools decodes it."""
    rle = mask_utils.frPyObjects([polygon], img_size, img_size)[0]
    return mask_utils.decode(rle).astype(bool)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (square neighbourhood)."""
    grown = mask.copy()
    height, width = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            grown[max(dy, 0):height + min(dy, 0),
                  max(dx, 0):width + min(dx, 0)] |= \
                mask[max(-dy, 0):height + min(-dy, 0),
                     max(-dx, 0):width + min(-dx, 0)]
    return grown


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two [x, y, w, h] boxes."""
    inter_w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def check_background(background: str) -> None:
    """Raise ValueError unless ``background`` is one of :data:`BACKGROUNDS`."""
    if background not in BACKGROUNDS:
        raise ValueError(f'unknown background {background!r}; expected one '
                         f'of {BACKGROUNDS}')


def render_background(rng: np.random.Generator, img_size: int,
                      background: str) -> np.ndarray:
    """(H, W, 3) float image with light Gaussian noise over a random muted
    color: as a linear gradient in a random direction (``'gradient'``, the
    demo's training and val images), or as a checkerboard of it and a second
    muted color (``'checker'``, a background the demo never trains on)."""
    check_background(background)
    hue, saturation, value = (rng.random(), rng.uniform(0.1, 0.3),
                              rng.uniform(0.35, 0.7))
    base = 255 * np.array(colorsys.hsv_to_rgb(hue, saturation, value))
    if background == 'gradient':
        angle = rng.uniform(0, 2 * np.pi)
        coords = (np.arange(img_size) + 0.5) / img_size - 0.5
        ramp = np.cos(angle) * coords[None, :] + np.sin(
            angle) * coords[:, None]  # in [-0.71, 0.71]
        image = base + (rng.uniform(20, 60) * ramp)[..., None]
    else:
        # the second color is CHECKER_CONTRAST lighter or darker
        other_value = value + (
            CHECKER_CONTRAST if value < 0.5 else -CHECKER_CONTRAST)
        other = 255 * np.array(
            colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.3),
                                other_value))
        cell = rng.integers(*CHECKER_CELL_PX, endpoint=True)
        cells = np.arange(img_size) // cell
        odd = (cells[:, None] + cells[None, :]) % 2 == 1
        image = np.where(odd[..., None], other, base)
    return image + rng.normal(0.0, 4.0, size=(img_size, img_size, 3))


def try_place(
        rng: np.random.Generator, shape: str, color: str, img_size: int,
        occupied: np.ndarray,
        boxes: List[List[float]]) -> Optional[Tuple[SceneObject, np.ndarray]]:
    """Sample a size, rotation and position for ``shape`` until the object lies
    inside the image, keeps ``MIN_GAP_PX`` from ``occupied`` and overlaps no
    box in ``boxes`` by more than ``MAX_BOX_IOU``; returns the object and its
    (H, W) bool mask, or None after ``PLACEMENT_ATTEMPTS`` failures."""
    for _ in range(PLACEMENT_ATTEMPTS):
        size = rng.uniform(*SIZE_RANGE) * img_size
        rotation = 0.0 if shape == 'circle' else rng.uniform(
            -MAX_ROTATION_DEG, MAX_ROTATION_DEG)
        outline = sized_outline(shape, size, rotation)
        low, high = outline.min(axis=0), outline.max(axis=0)
        # One pixel of margin keeps the rasterised shape clear of the border.
        center = rng.uniform(1 - low, img_size - 1 - high)
        # Rounded before rasterising, so the stored polygon is exactly what was
        # painted.
        polygon = [round(float(v), 2) for v in (outline + center).ravel()]
        mask = rasterize(polygon, img_size)
        if not mask.any() or (dilate(mask, MIN_GAP_PX) & occupied).any():
            continue
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        if all(box_iou(bbox, other) <= MAX_BOX_IOU for other in boxes):
            return SceneObject(shape, color, polygon, bbox,
                               float(mask_utils.area(rle))), mask
    return None


def render_scene(
        rng: np.random.Generator,
        img_size: int,
        max_objects: int,
        background: str = 'gradient') -> Tuple[np.ndarray, List[SceneObject]]:
    """A (H, W, 3) uint8 image with 1..``max_objects`` objects, and the
    objects in painting order. An object that finds no free place is left out,
    so a crowded image may hold fewer objects than drawn, never fewer than one
    (the first always fits)."""
    image = render_background(rng, img_size, background)
    occupied = np.zeros((img_size, img_size), dtype=bool)
    objects: List[SceneObject] = []
    color_names = list(COLORS)
    for _ in range(rng.integers(1, max_objects + 1)):
        shape = DEMO_CLASSES[rng.integers(len(DEMO_CLASSES))]
        color = color_names[rng.integers(len(color_names))]
        placed = try_place(rng, shape, color, img_size, occupied,
                           [o.bbox for o in objects])
        if placed is None:
            continue
        obj, mask = placed
        image[mask] = COLORS[color]
        occupied |= mask
        objects.append(obj)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def count_phrase(count: int, color: str, shape: str) -> str:
    """'a red circle', 'two red circles'."""
    if count == 1:
        article = 'an' if color[0] in 'aeiou' else 'a'
        return f'{article} {color} {shape}'
    return f'{NUMBER_WORDS[count]} {color} {PLURALS[shape]}'


def join_phrases(phrases: Sequence[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def make_captions(objects: Sequence[SceneObject]) -> List[str]:
    """Five different captions, each naming every group of same-colored
    same-shaped objects with its count. Groups go left to right (by their
    leftmost member's box centre) in three templates and in category, then
    color, order in the other two."""
    counts: Dict[Tuple[str, str], int] = {}
    leftmost: Dict[Tuple[str, str], float] = {}
    for obj in objects:
        key = (obj.color, obj.shape)
        counts[key] = counts.get(key, 0) + 1
        leftmost[key] = min(
            leftmost.get(key, math.inf), obj.bbox[0] + obj.bbox[2] / 2)
    color_names = list(COLORS)
    left_to_right = sorted(counts, key=leftmost.__getitem__)
    by_category = sorted(
        counts,
        key=lambda key:
        (DEMO_CLASSES.index(key[1]), color_names.index(key[0])))
    spatial = [count_phrase(counts[key], *key) for key in left_to_right]
    listed = [count_phrase(counts[key], *key) for key in by_category]
    verb = 'is' if counts[
        by_category[0]] == 1 else 'are'  # agrees with the first noun
    relation = (f'only {spatial[0]}' if len(spatial) == 1 else
                f'{spatial[0]} next to {join_phrases(spatial[1:])}')
    return [
        join_phrases(spatial),
        f'there {verb} {join_phrases(listed)}',
        f'an image with {join_phrases(spatial)}',
        f'a picture of {join_phrases(listed)}',
        relation,
    ]


def write_json(data: dict, path: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, separators=(',', ':'))
        f.write('\n')


def generate_demo_coco(out_dir: str,
                       num_train: int = 400,
                       num_val: int = 100,
                       img_size: int = 112,
                       seed: int = 0,
                       max_objects: int = 3,
                       background: str = 'gradient') -> List[SplitSummary]:
    """Write the demo dataset under ``out_dir``::

        train/000000000001.png ...   val/...
        annotations/instances_{train,val}.json   (COCO instances)
        annotations/captions_{train,val}.json    (COCO captions, 5 per image)
        annotations/vocab.json                   (caption word map of the train
                                                  captions, min_word_freq=1)

    With ``num_train=0`` only the val split is written (no vocab): a test set
    read with another root's vocab. Image, annotation and caption ids are
    unique across splits. Each image draws from its own generator seeded by
    (seed, split, index), so the first images of a split do not depend on how
    many are asked for.
    """
    if img_size < MIN_IMG_SIZE:
        raise ValueError(
            f'img_size must be at least {MIN_IMG_SIZE}, got {img_size}')
    if not 1 <= max_objects <= max(NUMBER_WORDS):
        raise ValueError(
            f'max_objects must be in 1..{max(NUMBER_WORDS)}, got {max_objects}'
        )
    if min(num_train, num_val, seed) < 0:
        raise ValueError('num_train, num_val and seed must be non-negative')
    check_background(background)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(DEMO_CLASSES)
    ]
    category_ids = {name: i + 1 for i, name in enumerate(DEMO_CLASSES)}
    info = dict(
        description='visft_mm demo shapes',
        img_size=img_size,
        seed=seed,
        max_objects=max_objects,
        background=background)
    annotation_dir = os.path.join(out_dir, 'annotations')
    os.makedirs(annotation_dir, exist_ok=True)
    image_ids, instance_ids, caption_ids = (
        itertools.count(1) for _ in range(3))
    summaries = []
    for split_index, (split, num_images) in enumerate(
            zip(SPLITS, (num_train, num_val))):
        if split == 'train' and num_train == 0:
            continue
        image_dir = os.path.join(out_dir, split)
        os.makedirs(image_dir, exist_ok=True)
        images, instances, captions = [], [], []
        for index in range(num_images):
            rng = np.random.default_rng([seed, split_index, index])
            pixels, objects = render_scene(rng, img_size, max_objects,
                                           background)
            image_id = next(image_ids)
            file_name = f'{image_id:012d}.png'
            Image.fromarray(pixels).save(
                os.path.join(image_dir, file_name), format='PNG')
            images.append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    width=img_size,
                    height=img_size))
            for obj in objects:
                instances.append(
                    dict(
                        id=next(instance_ids),
                        image_id=image_id,
                        category_id=category_ids[obj.shape],
                        segmentation=[obj.polygon],
                        area=obj.area,
                        bbox=obj.bbox,
                        iscrowd=0,
                        color=obj.color))
            for caption in make_captions(objects):
                captions.append(
                    dict(
                        id=next(caption_ids),
                        image_id=image_id,
                        caption=caption))
        write_json(
            dict(
                info=info,
                images=images,
                annotations=instances,
                categories=categories),
            os.path.join(annotation_dir, f'instances_{split}.json'))
        write_json(
            dict(info=info, images=images, annotations=captions),
            os.path.join(annotation_dir, f'captions_{split}.json'))
        if split == 'train':
            vocab = WordVocabulary.build((c['caption'] for c in captions),
                                         min_word_freq=1)
            vocab.save(os.path.join(annotation_dir, 'vocab.json'))
        summaries.append(
            SplitSummary(split, len(images), len(instances), len(captions),
                         len(categories)))
    return summaries
