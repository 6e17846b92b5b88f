"""k-shot training splits of an image-classification dataset, as annotation
files that mmpretrain's ``CustomDataset``/``ImageNet`` read (``<file> <label>``
per line, ``<file>`` relative to the split's image folder).

The source is read by mmpretrain's own ``CustomDataset``, so labels are the
ones training sees (class folders sorted by name, or the source file's).
"""
import os
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Optional

from mmpretrain.datasets import CustomDataset, ImageNet

from .imagenet_variants import missing_data_error

IMAGENET_SOURCE = (
    'get ImageNet-1k from https://image-net.org/download.php and arrange it '
    'as data/imagenet/{train,val}/<class>/*.JPEG, '
    'or as data/imagenet/{train,val}/*.JPEG '
    'with meta/{train,val}.txt lines "<file> <label>" '
    '(or point data_root at your copy)')


def default_fewshot_ann_file(split: str, shots: int, seed: int) -> str:
    """``meta/<split>_<shots>shot_seed<seed>.txt``, the name the few-shot
    probe configs read."""
    return osp.join('meta', f'{split}_{shots}shot_seed{seed}.txt')


def read_labelled_images(data_root: str,
                         split: str,
                         ann_file: Optional[str] = None):
    """``(label -> image paths relative to <data_root>/<split>, number of
    classes or None)``, from ``ann_file`` (relative to ``data_root``), else
    ``meta/<split>.txt`` if it exists (as mmpretrain's ImageNet does), else the
    class folders of ``<data_root>/<split>``."""
    img_prefix = osp.join(data_root, split)
    if ann_file is None and osp.isfile(
            osp.join(data_root, 'meta', f'{split}.txt')):
        ann_file = osp.join('meta', f'{split}.txt')
    if ann_file is not None and not osp.isfile(osp.join(data_root, ann_file)):
        raise missing_data_error('few-shot source',
                                 osp.join(data_root, ann_file),
                                 IMAGENET_SOURCE)
    if ann_file is None and not osp.isdir(img_prefix):
        raise missing_data_error('few-shot source', img_prefix,
                                 IMAGENET_SOURCE)
    dataset = CustomDataset(
        data_root=data_root,
        data_prefix=split,
        ann_file=ann_file or '',
        extensions=ImageNet.IMG_EXTENSIONS,
        pipeline=[],
        serialize_data=False)  # keeps data_list readable
    by_label: Dict[int, List[str]] = defaultdict(list)
    for info in dataset.data_list:
        by_label[info['gt_label']].append(
            osp.relpath(info['img_path'], img_prefix))
    num_classes = None if ann_file else len(dataset.metainfo['classes'])
    return by_label, num_classes


def fewshot_lines(by_label: Dict[int, List[str]],
                  shots: int,
                  seed: int,
                  num_classes: Optional[int] = None) -> List[str]:
    """``shots`` images of every class drawn with ``random.Random(seed)``, as
    sorted ``"<file> <label>"`` lines. The draw depends only on the seed and
    the set of files, not on the order they were listed in. A class with
    fewer than ``shots`` images (one of ``range(num_classes)`` with none,
    too) is an error."""
    if shots < 1:
        raise ValueError(f'shots must be at least 1, got {shots}')
    labels = range(num_classes) if num_classes is not None else sorted(
        by_label)
    short = [
        f'{label} ({len(by_label.get(label, []))})' for label in labels
        if len(by_label.get(label, [])) < shots
    ]
    if short:
        raise ValueError(
            f'{len(short)} classes have fewer than {shots} images: '
            f'{", ".join(short[:10])}{", ..." if len(short) > 10 else ""}')
    rng = random.Random(seed)
    lines = []
    for label in labels:
        chosen = rng.sample(sorted(by_label[label]), shots)
        lines.extend(f'{path} {label}' for path in sorted(chosen))
    return lines


def write_fewshot_split(data_root: str,
                        shots: int,
                        seed: int = 0,
                        split: str = 'train',
                        ann_file: Optional[str] = None,
                        out: Optional[str] = None) -> str:
    """Write the ``shots``-per-class split of ``<data_root>/<split>`` to
    ``out`` (relative to ``data_root``; default
    :func:`default_fewshot_ann_file`) and return its full path."""
    by_label, num_classes = read_labelled_images(data_root, split, ann_file)
    lines = fewshot_lines(by_label, shots, seed, num_classes)
    path = osp.join(data_root, out
                    or default_fewshot_ann_file(split, shots, seed))
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path
