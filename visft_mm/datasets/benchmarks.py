"""mmseg's ADE20K and mmpretrain's ImageNet for the out-of-domain probes, with
one clear error when the data is missing.

Both read exactly what the parents read. Nothing can be downloaded here, so a
missing folder or annotation file names the expected path and says how to get
it, instead of the parents' bare ``FileNotFoundError`` (or, for ADE20K without
its annotations, a decode error at the first training step).

They are not registered: they run in mmseg's or mmpretrain's scope (their
pipelines name those packages' transforms), from which visft_mm's registries,
children of mmdet's, cannot be reached by a ``visft_mm.`` prefix. Configs name
them by import path, which mmengine resolves from any scope:
``type='visft_mm.datasets.benchmarks.ADE20KDataset'``.
"""
import os.path as osp
from typing import List

from mmpretrain.datasets import ImageNet as MMPretrainImageNet
from mmseg.datasets import ADE20KDataset as MMSegADE20KDataset


ADE20K_SOURCE = (
    'download ADEChallengeData2016.zip from '
    'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unzip it '
    'into data/ade/, giving data/ade/ADEChallengeData2016/{images,annotations}/'
    '{training,validation}/ (or point data_root at your copy)')
IMAGENET_SOURCE = (
    'get ImageNet-1k from https://image-net.org/download.php and arrange it as '
    'data/imagenet/{train,val}/<class>/*.JPEG, or as data/imagenet/{train,val}/*.JPEG '
    'with meta/{train,val}.txt lines "<file> <label>" (or point data_root at your copy); '
    'a k-shot annotation file is written by tools/misc/make_fewshot_split.py')


def missing_data_error(dataset: str, path: str, source: str) -> FileNotFoundError:
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
                'ADE20K', osp.join(self.data_prefix['img_path'], f'*{self.img_suffix}'),
                ADE20K_SOURCE)
        return data_list


class ImageNet(MMPretrainImageNet):
    """mmpretrain's ``ImageNet`` (class folders, or an annotation file such
    as a k-shot split) that names the missing file or folder and how to get it."""

    def load_data_list(self) -> List[dict]:
        if self.ann_file and not osp.isfile(self.ann_file):
            raise missing_data_error('ImageNet', self.ann_file, IMAGENET_SOURCE)
        if not osp.isdir(self.img_prefix):
            raise missing_data_error('ImageNet', self.img_prefix, IMAGENET_SOURCE)
        return super().load_data_list()
