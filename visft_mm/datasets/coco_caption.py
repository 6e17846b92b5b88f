"""COCO caption dataset of ViSFT's caption task, from COCO's or Karpathy's
json.

Hand-written because mmpretrain's ``COCOCaption`` reads only the BLIP/LAVIS
json (a list of ``{image, caption}``), while ViSFT trains on the Karpathy
split (``dataset_coco.json``) and COCO ships ``captions_*.json``. Training
yields one item per caption, as the official dataset does (sample ``i`` reads
image ``i // 5`` when every image has five captions); testing yields one item
per image with all its captions as references.
"""
import json
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Tuple

from mmengine import fileio
from mmengine.dataset import BaseDataset

from visft_mm.registry import DATASETS
from visft_mm.utils.required_paths import InputError
from .checked_coco import ImagesChecked

COCO_LAYOUT = 'coco'
KARPATHY_LAYOUT = 'karpathy'
# Karpathy split name -> the values of ``image['split']`` it takes.
KARPATHY_SPLITS: Dict[str, Tuple[str, ...]] = {
    'train': ('train', 'restval'),
    'val': ('val', ),
    'test': ('test', ),
}


class CaptionImage(NamedTuple):
    """One image: its COCO id, its path under the image prefix, its
    captions."""
    image_id: int
    file_path: str
    captions: List[str]


def read_caption_json(ann_file: str) -> Tuple[str, dict]:
    """The layout (``'coco'`` or ``'karpathy'``) and content of a captions
    json.

    COCO's ``captions_*.json`` has ``images`` and ``annotations``; Karpathy's
    ``dataset_coco.json`` has ``images`` whose entries hold ``sentences``.
    A missing, undecodable or unrecognised file raises :class:`InputError`.
    """
    if not fileio.exists(ann_file):
        raise InputError(f'{ann_file}: caption annotation file not found')
    try:
        data = json.loads(fileio.get_text(ann_file))
    except UnicodeDecodeError as exc:
        raise InputError(f'{ann_file}: not UTF-8 text ({exc})') from None
    except ValueError as exc:  # json.JSONDecodeError
        raise InputError(f'{ann_file}: not valid JSON ({exc})') from None
    if isinstance(data, dict) and isinstance(data.get('images'), list):
        if 'annotations' in data:
            return COCO_LAYOUT, data
        if all(
                isinstance(image, dict) and 'sentences' in image
                for image in data['images']):
            return KARPATHY_LAYOUT, data
    raise InputError(
        f'{ann_file}: neither a COCO captions json (images + annotations) '
        "nor a Karpathy dataset_coco.json (images with 'sentences')")


def parse_caption_images(ann_file: str,
                         layout: str,
                         data: dict,
                         split: Optional[str] = None) -> List[CaptionImage]:
    """The images of ``data`` that have captions, in file order.

    ``split`` selects the Karpathy split (``train`` is train + restval) and
    must be None for the COCO layout, whose files hold one split each.
    ``ann_file`` only names the file in error messages.
    """
    try:
        if layout == COCO_LAYOUT:
            if split is not None:
                raise ValueError(
                    f'split={split!r} applies to the Karpathy layout only; '
                    'a COCO captions json holds one split')
            captions: Dict[int, List[str]] = {
                image['id']: []
                for image in data['images']
            }
            for annotation in data['annotations']:
                captions[annotation['image_id']].append(
                    annotation['caption'].strip())
            images = [
                CaptionImage(image['id'], image['file_name'],
                             captions[image['id']]) for image in data['images']
            ]
        else:
            if split not in KARPATHY_SPLITS:
                raise ValueError('a Karpathy json needs split in '
                                 f'{sorted(KARPATHY_SPLITS)}, '
                                 f'got {split!r}')
            images = [
                CaptionImage(image['cocoid'],
                             osp.join(image['filepath'], image['filename']), [
                                 sentence['raw'].strip()
                                 for sentence in image['sentences']
                             ]) for image in data['images']
                if image['split'] in KARPATHY_SPLITS[split]
            ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f'{ann_file}: malformed caption annotations '
                         f'({type(exc).__name__} {exc})') from None
    return [image for image in images if image.captions]


@DATASETS.register_module()
class CocoCaptionDataset(ImagesChecked, BaseDataset):
    """COCO captions for training (one item per caption) or testing (per
    image).

    Items hold ``img_path``, ``image_id`` and ``gt_caption``: a string in
    training, the list of the image's references with ``test_mode=True``.
    Images without captions are left out; every image left must exist, and
    a bad annotation file or a missing image raises :class:`InputError`
    naming the file when the dataset is built. Every caption is kept whole: the
    official files hold exactly five per image (sampled with replacement
    where fewer, leaving out those over 50 words), while a few COCO images
    have six or seven; the caption head cuts captions to its ``max_len``.

    Args:
        ann_file: COCO ``captions_*.json`` or Karpathy ``dataset_coco.json``;
            the layout is read from its keys.
        split: Karpathy split, ``'train'`` (train + restval), ``'val'`` or
            ``'test'``; leave it None for a COCO captions json.
        **kwargs: Arguments of :class:`mmengine.dataset.BaseDataset`;
            ``data_prefix=dict(img_path=...)`` is the image folder. Karpathy
            paths are ``img_path/filepath/filename`` (``filepath`` is
            ``train2014``/``val2014``), COCO ones ``img_path/file_name``.
    """

    METAINFO = dict(task='caption')

    def __init__(self, ann_file: str, split: Optional[str] = None, **kwargs):
        self.split = split
        super().__init__(ann_file=ann_file, **kwargs)

    def load_data_list(self) -> List[dict]:
        layout, data = read_caption_json(self.ann_file)
        images = parse_caption_images(self.ann_file, layout, data, self.split)
        img_prefix = self.data_prefix['img_path']
        data_list = []
        for image in images:
            item = dict(
                img_path=fileio.join_path(img_prefix, image.file_path),
                image_id=image.image_id)
            if self.test_mode:
                data_list.append(dict(item, gt_caption=image.captions))
            else:
                data_list.extend(
                    dict(item, gt_caption=caption)
                    for caption in image.captions)
        return data_list
