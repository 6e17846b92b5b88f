"""Datasets of the out-of-domain benchmarks, with one clear error when the
data is missing: mmseg's ADE20K and mmpretrain's ImageNet (probes),
mmpretrain's COCO and Flickr30k retrieval, and the ImageNet variants
(EVA-CLIP zero-shot classification).

The mmseg/mmpretrain ones read exactly what the parents read. Nothing can be
downloaded here, so a missing folder or annotation file names the expected
path and says how to get it, instead of the parents' bare
``FileNotFoundError`` (or, for ADE20K without its annotations, a decode error
at the first training step).

:class:`ImageNetVariant` is hand-written because mmpretrain's
``CustomDataset`` numbers class folders in sorted order, which is wrong for
ImageNet-V2 (folders ``0``..``999`` are class indices, sorted as strings) and
gives ImageNet-A/R's 200 classes labels that mean nothing without their names.

They are not registered: they run in mmseg's or mmpretrain's scope (their
pipelines name those packages' transforms), and configs name them by import
path, which mmengine resolves from any scope:
``type='visft_mm.datasets.benchmarks.ADE20KDataset'``.
"""
import os.path as osp
from typing import List

from mmengine.logging import MMLogger
from mmpretrain.datasets import COCORetrieval as MMPretrainCOCORetrieval
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets import \
    Flickr30kRetrieval as MMPretrainFlickr30kRetrieval
from mmpretrain.datasets import ImageNet as MMPretrainImageNet
from mmpretrain.datasets.custom import find_folders, get_samples
from mmseg.datasets import ADE20KDataset as MMSegADE20KDataset

from .imagenet_variants import (IMAGENET_VARIANTS, imagenet_class_names,
                                imagenet_variant_folders)

ADE20K_SOURCE = (
    'download ADEChallengeData2016.zip from '
    'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip '
    'and unzip it into data/ade/, giving '
    'data/ade/ADEChallengeData2016/{images,annotations}/'
    '{training,validation}/ (or point data_root at your copy)')
IMAGENET_SOURCE = (
    'get ImageNet-1k from https://image-net.org/download.php and arrange it '
    'as data/imagenet/{train,val}/<class>/*.JPEG, '
    'or as data/imagenet/{train,val}/*.JPEG '
    'with meta/{train,val}.txt lines "<file> <label>" '
    '(or point data_root at your copy); '
    'a k-shot annotation file is written by tools/misc/make_fewshot_split.py')
COCO_RETRIEVAL_SOURCE = (
    'download the COCO val2014 images '
    '(http://images.cocodataset.org/zips/val2014.zip) into '
    'data/coco/val2014/ and the Karpathy test split in COCO format '
    '(https://download.openmmlab.com/mmclassification/datasets/coco_retrieval/'
    'caption_karpathy_test2014.json) into data/coco/annotations/ '
    '(or point data_root at your copy)')
FLICKR30K_SOURCE = (
    'request the Flickr30k images at '
    'https://shannon.cs.illinois.edu/DenotationGraph/ and put '
    "them in data/flickr30k/images/; Karpathy's dataset_flickr30k.json (in "
    'https://cs.stanford.edu/people/karpathy/deepimagesent/'
    'caption_datasets.zip) goes in '
    'data/flickr30k/annotations/ (or point data_root at your copy)')


def missing_data_error(dataset: str, path: str,
                       source: str) -> FileNotFoundError:
    """The error for data of ``dataset`` missing at ``path``."""
    return FileNotFoundError(f'{dataset}: {path} not found; {source}')


class ADE20KDataset(MMSegADE20KDataset):
    """mmseg's ``ADE20KDataset`` (150 classes, ``reduce_zero_label``) that
    names the missing folder and how to get ADE20K."""

    def load_data_list(self) -> List[dict]:
        for key in ('img_path', 'seg_map_path'):
            folder = self.data_prefix.get(key)
            if folder and not osp.isdir(folder):
                raise missing_data_error('ADE20K', folder, ADE20K_SOURCE)
        data_list = super().load_data_list()
        if not data_list:
            raise missing_data_error(
                'ADE20K',
                osp.join(self.data_prefix['img_path'], f'*{self.img_suffix}'),
                ADE20K_SOURCE)
        return data_list


class ImageNet(MMPretrainImageNet):
    """mmpretrain's ``ImageNet`` (class folders, or an annotation file such
    as a k-shot split) that names the missing file or folder and how to get
    it."""

    def load_data_list(self) -> List[dict]:
        if self.ann_file and not osp.isfile(self.ann_file):
            raise missing_data_error('ImageNet', self.ann_file,
                                     IMAGENET_SOURCE)
        if not osp.isdir(self.img_prefix):
            raise missing_data_error('ImageNet', self.img_prefix,
                                     IMAGENET_SOURCE)
        return super().load_data_list()


class _RetrievalFilesCheck:
    """For mmpretrain's retrieval datasets: the annotation file, the image
    folder and the first image it names must exist."""

    NAME = ''
    SOURCE = ''

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise missing_data_error(self.NAME, self.ann_file, self.SOURCE)
        if not osp.isdir(self.img_prefix):
            raise missing_data_error(self.NAME, self.img_prefix, self.SOURCE)
        data_list = super().load_data_list()
        if data_list and not osp.isfile(data_list[0]['img_path']):
            raise missing_data_error(self.NAME, data_list[0]['img_path'],
                                     self.SOURCE)
        return data_list


class COCORetrieval(_RetrievalFilesCheck, MMPretrainCOCORetrieval):
    """mmpretrain's ``COCORetrieval`` (Karpathy split in COCO format, images
    found through ``coco_url``) that names missing files and how to get
    them."""

    NAME = 'COCO retrieval'
    SOURCE = COCO_RETRIEVAL_SOURCE


class Flickr30kRetrieval(_RetrievalFilesCheck, MMPretrainFlickr30kRetrieval):
    """mmpretrain's ``Flickr30kRetrieval`` (Karpathy
    ``dataset_flickr30k.json``) that names missing files and how to get
    them."""

    NAME = 'Flickr30k retrieval'
    SOURCE = FLICKR30K_SOURCE


# ----------------------------------------------------------- ImageNet variants
class ImageNetVariant(CustomDataset):
    """ImageNet-V2 (matched frequency), -Sketch, -A or -R in its own folder
    layout.

    Labels follow the variant's class list (``imagenet_class_indices``):
    ImageNet-1k order, restricted to 200 classes for ImageNet-A/R, so label
    ``i`` is class name ``imagenet_class_names(variant)[i]``. Every class
    folder must be there and no other folder may be.

    Args:
        variant: ``'imagenet-v2'``, ``'imagenet-sketch'``, ``'imagenet-a'`` or
            ``'imagenet-r'``.
        data_root: The folder holding the class folders.
        **kwargs: Other arguments of mmpretrain's ``CustomDataset``.
    """

    def __init__(self, variant: str, data_root: str, **kwargs):
        if variant not in IMAGENET_VARIANTS:
            raise KeyError(
                f'unknown ImageNet variant {variant!r}; choose from '
                f'{list(IMAGENET_VARIANTS)}')
        self.variant = variant
        super().__init__(
            data_root=data_root,
            metainfo=dict(classes=imagenet_class_names(variant)),
            **kwargs)

    def _find_samples(self):
        source = IMAGENET_VARIANTS[self.variant].source
        if not osp.isdir(self.img_prefix):
            raise missing_data_error(self.variant, self.img_prefix, source)
        expected = imagenet_variant_folders(self.variant)
        found, _ = find_folders(self.img_prefix)
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f'{self.img_prefix} is not {self.variant} in its own layout: '
                + '; '.join(f'{len(names)} {what} class folders '
                            f'({", ".join(names[:3])}'
                            f'{", ..." if len(names) > 3 else ""})'
                            for what, names in (
                                ('missing', missing),
                                ('unexpected', unexpected)) if names) +
                f'. To get it: {source}')
        folder_to_label = {
            folder: label
            for label, folder in enumerate(expected)
        }
        samples, empty = get_samples(
            self.img_prefix, folder_to_label, is_valid_file=self.is_valid_file)
        if empty:
            MMLogger.get_current_instance().warning(
                f'{self.img_prefix}: {len(empty)} of the {len(expected)} '
                f'{self.variant} class folders hold no images')
        if not samples:
            raise missing_data_error(
                self.variant, osp.join(self.img_prefix, '<class>/<image>'),
                source)
        return samples
