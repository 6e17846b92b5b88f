"""The demo shapes dataset: deterministic, readable by pycocotools and mmdet,
masks that match the pixels, and captions that match the annotations."""
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image
from pycocotools.coco import COCO
from tiny import run_script

from visft_mm.demo.demo_coco import (COLORS, DEMO_CLASSES, NUMBER_WORDS,
                                     PLURALS, SceneObject, generate_demo_coco,
                                     make_captions)

SMALL = dict(num_train=12, num_val=4, img_size=112, max_objects=3)


def tree_bytes(root: Path) -> Dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob('*')) if path.is_file()
    }


def load(root: Path, kind: str, split: str) -> dict:
    return json.loads(
        (root / 'annotations' / f'{kind}_{split}.json').read_text())


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('demo')
    generate_demo_coco(str(root), seed=0, **SMALL)
    return root


def test_same_seed_same_bytes_other_seed_differs(demo_root, tmp_path):
    generate_demo_coco(str(tmp_path / 'again'), seed=0, **SMALL)
    generate_demo_coco(str(tmp_path / 'other'), seed=1, **SMALL)
    reference = tree_bytes(demo_root)
    assert len(
        reference) == 12 + 4 + 5  # images, 4 annotation files and vocab.json
    assert tree_bytes(tmp_path / 'again') == reference
    other = tree_bytes(tmp_path / 'other')
    assert other.keys() == reference.keys()
    instances = 'annotations/instances_train.json'
    assert other[instances] != reference[instances]
    assert all(other[name] != reference[name] for name in reference
               if name.endswith('.png'))


def test_first_images_do_not_depend_on_split_size(demo_root, tmp_path):
    generate_demo_coco(
        str(tmp_path), num_train=3, num_val=0, img_size=112, max_objects=3)
    for name in ('000000000001.png', '000000000002.png', '000000000003.png'):
        assert (tmp_path / 'train' /
                name).read_bytes() == (demo_root / 'train' /
                                       name).read_bytes()


def test_layout_and_ids(demo_root):
    image_ids = []
    for split, num_images in (('train', 12), ('val', 4)):
        coco = COCO(str(demo_root / 'annotations' / f'instances_{split}.json'))
        assert [c['name']
                for c in coco.loadCats(coco.getCatIds())] == list(DEMO_CLASSES)
        assert coco.getCatIds() == list(range(1, len(DEMO_CLASSES) + 1))
        assert len(coco.getImgIds()) == num_images
        for image in coco.loadImgs(coco.getImgIds()):
            assert image['width'] == image['height'] == 112
            assert Image.open(demo_root / split /
                              image['file_name']).size == (112, 112)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
            assert 1 <= len(anns) <= 3
            assert all(a['iscrowd'] == 0 and a['area'] > 0 for a in anns)
        image_ids += coco.getImgIds()
        captions = load(demo_root, 'captions', split)
        assert [i['id'] for i in captions['images']] == coco.getImgIds()
    assert len(set(image_ids)) == len(image_ids)


def test_mmdet_coco_dataset_reads_it(demo_root):
    from mmdet.datasets import CocoDataset

    dataset = CocoDataset(
        data_root=str(demo_root),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=DEMO_CLASSES),
        pipeline=[],
        test_mode=False)
    assert len(dataset) == 12
    sample = dataset[0]
    assert os.path.isfile(sample['img_path'])
    coco_anns = [
        a for a in load(demo_root, 'instances', 'train')['annotations']
        if a['image_id'] == sample['img_id']
    ]
    assert len(sample['instances']) == len(coco_anns)
    for instance, ann in zip(sample['instances'], coco_anns):
        assert instance['bbox_label'] == ann['category_id'] - 1
        assert 0 <= instance['bbox_label'] < len(DEMO_CLASSES)
        x, y, w, h = ann['bbox']
        assert instance['bbox'] == pytest.approx([x, y, x + w, y + h])
        assert instance['mask'] == ann['segmentation']


@pytest.mark.parametrize('split', ['train', 'val'])
def test_masks_match_pixels(demo_root, split):
    instances = load(demo_root, 'instances', split)
    for image in instances['images']:
        pixels = np.asarray(
            Image.open(demo_root / split / image['file_name']).convert('RGB'))
        covered = np.zeros(pixels.shape[:2], dtype=int)
        for ann in (a for a in instances['annotations']
                    if a['image_id'] == image['id']):
            rle = mask_utils.merge(
                mask_utils.frPyObjects(ann['segmentation'], image['height'],
                                       image['width']))
            mask = mask_utils.decode(rle).astype(bool)
            covered += mask
            # Rendered without anti-aliasing through this very mask: exact, not
            # approximate.
            assert (pixels[mask] == COLORS[ann['color']]).all()
            assert ann['bbox'] == pytest.approx(
                mask_utils.toBbox(rle).tolist(), abs=1)
            assert ann['area'] == pytest.approx(mask.sum())
        assert covered.max() == 1  # objects never overlap
        background = pixels[covered == 0]
        for color in COLORS.values():  # nothing outside the masks was painted
            assert not (background == color).all(axis=1).any()


def group_phrases(anns: List[dict]) -> Set[Tuple[str, str, str]]:
    """{(count word, color, noun)} expected in every caption of one image."""
    counts: Dict[Tuple[str, str], int] = {}
    for ann in anns:
        key = (ann['color'], DEMO_CLASSES[ann['category_id'] - 1])
        counts[key] = counts.get(key, 0) + 1
    return {('a', color, shape) if n == 1 else
            (NUMBER_WORDS[n], color, PLURALS[shape])
            for (color, shape), n in counts.items()}


PHRASE = re.compile(r'\b(an?|{})\s+({})\s+(\w+)'.format(
    '|'.join(NUMBER_WORDS.values()), '|'.join(COLORS)))
SHAPE_WORD = re.compile(r'\b({})\b'.format(
    '|'.join(list(DEMO_CLASSES) + list(PLURALS.values()))))


@pytest.mark.parametrize('split', ['train', 'val'])
def test_captions_match_annotations(demo_root, split):
    instances = load(demo_root, 'instances', split)
    captions = load(demo_root, 'captions', split)
    assert len({c['id']
                for c in captions['annotations']
                }) == len(captions['annotations'])
    for image in instances['images']:
        expected = group_phrases([
            a for a in instances['annotations'] if a['image_id'] == image['id']
        ])
        texts = [
            c['caption'] for c in captions['annotations']
            if c['image_id'] == image['id']
        ]
        assert len(texts) == len(set(texts)) == 5
        for text in texts:
            assert set(PHRASE.findall(text)) == expected, text
            # Every shape word belongs to one of those phrases: no absent
            # category, no stray count.
            assert len(SHAPE_WORD.findall(text)) == len(expected), text


def test_caption_templates():

    def obj(shape: str, color: str, x: float) -> SceneObject:
        return SceneObject(
            shape=shape,
            color=color,
            polygon=[],
            bbox=[x, 0.0, 10.0, 10.0],
            area=100.0)

    scene = [
        obj('cross', 'red', 50),
        obj('circle', 'blue', 70),
        obj('cross', 'red', 5)
    ]
    assert make_captions(scene) == [
        'two red crosses and a blue circle',
        'there is a blue circle and two red crosses',
        'an image with two red crosses and a blue circle',
        'a picture of a blue circle and two red crosses',
        'two red crosses next to a blue circle',
    ]
    three = [
        obj('square', 'green', 0),
        obj('triangle', 'yellow', 30),
        obj('square', 'red', 60)
    ]
    assert make_captions(three)[
        1] == 'there is a red square, a green square and a yellow triangle'
    assert make_captions([
        obj('square', 'green', 0),
        obj('square', 'green', 40)
    ])[1::3] == ['there are two green squares', 'only two green squares']


def test_cli_prints_one_summary_per_split(demo_root, tmp_path):
    result = run_script('tools/misc/make_demo_coco.py', tmp_path,
                        '--num-train', '12', '--num-val', '4', '--img-size',
                        '112', '--seed', '0', '--max-objects', '3')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('train: 12 images, ')
    assert lines[1].startswith('val: 4 images, ')
    assert all(
        line.endswith('captions, 4 categories -> ' + str(tmp_path))
        for line in lines)
    assert tree_bytes(tmp_path) == tree_bytes(demo_root)
