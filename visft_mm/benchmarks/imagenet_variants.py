"""The classes of ImageNet and its variants (ImageNet-V2, -Sketch, -A, -R),
how each variant names its class folders, and the dataset that reads a
variant, for EVA-CLIP zero-shot classification: the dataset and the model's
class names must agree.

The synset list and the ImageNet-A/R class subsets are timm's (its
``data/_info`` files); the class names are CLIP's, as mmpretrain ships them.

:class:`ImageNetVariant` is hand-written because mmpretrain's
``CustomDataset`` numbers class folders in sorted order, which is wrong for
ImageNet-V2 (folders ``0``..``999`` are class indices, sorted as strings) and
gives ImageNet-A/R's 200 classes labels that mean nothing without their names.
It is not registered: it runs in mmpretrain's scope (its pipeline names
mmpretrain's transforms), and configs name it by import path, which mmengine
resolves from any scope:
``type='visft_mm.benchmarks.imagenet_variants.ImageNetVariant'``.
"""
import os.path as osp
import pkgutil
from dataclasses import dataclass
from typing import List, Optional, Tuple

from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets.categories import IMAGENET_SIMPLE_CATEGORIES
from mmpretrain.datasets.custom import find_folders, get_samples


def _timm_info_lines(name: str) -> List[str]:
    """A list shipped in timm's ``data/_info`` (ImageNet synsets and the
    ImageNet-A/R class subsets)."""
    return pkgutil.get_data('timm.data',
                            f'_info/{name}').decode('utf-8').split()


IMAGENET_SYNSETS: Tuple[str,
                        ...] = tuple(_timm_info_lines('imagenet_synsets.txt'))


@dataclass(frozen=True)
class VariantSpec:
    """How an ImageNet variant stores its classes.

    Attributes:
        folder_names: ``'wnid'`` (folders named by WordNet id) or ``'index'``
            (folders named by ImageNet-1k class index).
        subset: Name of timm's list of the variant's ImageNet-1k classes
            (``imagenet_a`` → ``imagenet_a_indices.txt``), None for all 1000.
        source: Where the data comes from and how to lay it out.
    """
    folder_names: str
    subset: Optional[str]
    source: str


IMAGENET_VARIANTS = {
    'imagenet-v2':
    VariantSpec(
        'index', None, 'download imagenetv2-matched-frequency.tar.gz from '
        'https://huggingface.co/datasets/vaishaal/ImageNetV2 and extract it '
        'so that the class folders 0..999 of '
        'imagenetv2-matched-frequency-format-val are data/imagenet-v2/0..999 '
        '(or point data_root at your copy)'),
    'imagenet-sketch':
    VariantSpec(
        'wnid', None, 'download ImageNet-Sketch '
        '(https://github.com/HaohanWang/ImageNet-Sketch) and extract '
        'it so that the class folders of sketch/ are '
        'data/imagenet-sketch/<wnid>/ (or point data_root at your copy)'),
    'imagenet-a':
    VariantSpec(
        'wnid', 'imagenet_a',
        'download https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar '
        'and extract it into data/, giving data/imagenet-a/<wnid>/ for its '
        '200 classes (or point data_root at your copy)'),
    'imagenet-r':
    VariantSpec(
        'wnid', 'imagenet_r',
        'download https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar '
        'and extract it into data/, giving data/imagenet-r/<wnid>/ for its '
        '200 classes (or point data_root at your copy)'),
}


def imagenet_class_indices(variant: str) -> List[int]:
    """ImageNet-1k indices of the classes of ``variant`` ('imagenet' or a key
    of :data:`IMAGENET_VARIANTS`), in the variant's label order."""
    if variant == 'imagenet':
        return list(range(len(IMAGENET_SYNSETS)))
    if variant not in IMAGENET_VARIANTS:
        raise KeyError(f'unknown ImageNet variant {variant!r}; choose from '
                       f"{['imagenet', *IMAGENET_VARIANTS]}")
    subset = IMAGENET_VARIANTS[variant].subset
    if subset is None:
        return list(range(len(IMAGENET_SYNSETS)))
    return sorted(int(i) for i in _timm_info_lines(f'{subset}_indices.txt'))


def imagenet_variant_folders(variant: str) -> List[str]:
    """The class folder names of an ImageNet variant, in label order."""
    indices = imagenet_class_indices(variant)
    if IMAGENET_VARIANTS[variant].folder_names == 'index':
        return [str(i) for i in indices]
    return [IMAGENET_SYNSETS[i] for i in indices]


def imagenet_class_names(variant: str) -> List[str]:
    """CLIP's ImageNet class names (mmpretrain's
    ``IMAGENET_SIMPLE_CATEGORIES``, the names EVA-CLIP evaluates with) of the
    classes of ``variant``."""
    return [
        IMAGENET_SIMPLE_CATEGORIES[i] for i in imagenet_class_indices(variant)
    ]


def missing_data_error(dataset: str, path: str,
                       source: str) -> FileNotFoundError:
    """The error for data of ``dataset`` missing at ``path``."""
    return FileNotFoundError(f'{dataset}: {path} not found; {source}')


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
