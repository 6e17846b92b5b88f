"""The classes of ImageNet and its variants (ImageNet-V2, -Sketch, -A, -R) and
how each variant names its class folders, for EVA-CLIP zero-shot
classification: the dataset and the model's class names must agree.

The synset list and the ImageNet-A/R class subsets are timm's (its
``data/_info`` files); the class names are CLIP's, as mmpretrain ships them.
"""
import pkgutil
from dataclasses import dataclass
from typing import List, Optional, Tuple

from mmpretrain.datasets.categories import IMAGENET_SIMPLE_CATEGORIES


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
