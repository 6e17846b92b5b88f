"""mmdet's COCO detection/segmentation dataset with its inputs checked when it
is built: a broken annotation file, a missing field or a missing image stops
the build with one :class:`InputError` naming the file.

mmdet's ``CocoDataset`` reads the json with pycocotools, which fails with a
bare ``KeyError`` deep in its index for an annotation without ``image_id``,
and builds an empty dataset from a json without ``images``; a missing image
surfaces only when a data worker first loads it. Written here is only the
check: the fields mmdet reads, and one ``os.path.exists`` per image after
filtering. The loading is mmdet's.
"""
import json
import os.path as osp
from typing import Iterable, List, Optional

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO

from visft_mm.checkpoints.io import describe_keys
from visft_mm.registry import DATASETS
from visft_mm.utils.required_paths import InputError

# What mmdet's CocoDataset reads of each entry (pycocotools' index and
# CocoDataset.parse_data_info); other fields are optional.
COCO_FIELDS = dict(
    images=('id', 'file_name', 'height', 'width'),
    annotations=('id', 'image_id', 'category_id', 'bbox', 'area'),
    categories=('id', 'name'))


def coco_json_problem(data: dict) -> Optional[str]:
    """What a COCO instances json lacks of what mmdet reads, or None."""
    for section, fields in COCO_FIELDS.items():
        entries = data.get(section)
        if not isinstance(entries, list):
            return f'no {section!r} list'
        for index, entry in enumerate(entries):
            lacking = [f for f in fields if f not in entry] if isinstance(
                entry, dict) else list(fields)
            if lacking:
                return f'{section}[{index}] has no {lacking[0]!r}'
    return None


class FieldCheckedCOCO(COCO):
    """mmdet's COCO API that checks the fields before it indexes them."""

    def createIndex(self):
        problem = coco_json_problem(self.dataset)
        if problem is not None:
            raise InputError(problem)
        super().createIndex()


def check_images_exist(ann_file: str, img_paths: Iterable[str]) -> None:
    """Raise :class:`InputError` naming the images of ``ann_file`` that are
    not on disk (each path checked once)."""
    missing = [p for p in dict.fromkeys(img_paths) if not osp.exists(p)]
    if missing:
        raise InputError(f'{ann_file}: {len(missing)} of its images not '
                         f'found: {describe_keys(missing)}')


class ImagesChecked:
    """Mixin for an mmengine ``BaseDataset`` on local files: after filtering,
    every image the dataset will load must exist."""

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        check_images_exist(self.ann_file,
                           (info['img_path'] for info in data_list))
        return data_list


@DATASETS.register_module()
class CheckedCocoDataset(ImagesChecked, CocoDataset):
    """mmdet's ``CocoDataset`` that names its annotation file in one
    :class:`InputError` when the file is not valid UTF-8 JSON, lacks a field
    mmdet reads, or names an image that does not exist."""

    COCOAPI = FieldCheckedCOCO

    def load_data_list(self) -> List[dict]:
        try:
            return super().load_data_list()
        except UnicodeDecodeError as exc:
            problem = f'not UTF-8 text ({exc})'
        except json.JSONDecodeError as exc:
            problem = f'not valid JSON ({exc})'
        except (InputError, AssertionError) as exc:
            # the field check above; pycocotools' and mmdet's asserts (a
            # top level that is not an object, annotation ids not unique)
            problem = str(exc)
        raise InputError(f'{self.ann_file}: {problem}')
