"""Check that the files a config needs exist, before anything is built.

Evaluation configs that read large downloaded assets (checkpoints, Hugging
Face model folders, datasets) list them in ``required_paths``; without the
check a missing file surfaces late and obscurely (a Hugging Face hub lookup,
a pycocotools traceback). ``required_paths`` maps group names to lists, so a
config adds its groups to those of its base (mmengine merges dicts, not
lists). Each entry names the config key that holds the path, so the check
sees the values after ``--cfg-options``::

    required_paths = dict(
        model=[dict(key='load_from', what='BLIP-2 checkpoint',
                    how='download URL')],
        data=[dict(key='test_dataloader.dataset.ann_file',
                   root='test_dataloader.dataset.data_root',
                   what='...', how='...')])

``root`` names a key holding the directory that a relative path is joined to,
as mmengine's ``BaseDataset`` joins ``data_root``; ``subpath`` is a path
inside the value that must exist too (images named by an annotation file).
``{path}`` in ``how`` stands for the path checked, so a command that makes the
file names the path the config reads. Keys whose value, or a parent's, is
None are not checked (an optional input that is not used, such as
``model.backbone.init_cfg=None``). An entry with ``training_only=True``
(training data, the stage-1 runs a stage-2 model starts from) is checked by
tools/train.py and not by tools/test.py.

:class:`InputError` is the one type of a bad input, a file or config value
that cannot be used; tools/train.py and tools/test.py turn it into one
``error:`` line (:func:`visft_mm.utils.cli.exit_on_input_error`).
"""
import os.path as osp
from typing import Any, List

from mmengine.config import Config


class InputError(ValueError):
    """An input that cannot be used: a missing or malformed file, or a config
    value naming nothing. The message starts with the file or key."""


class MissingPathsError(InputError):
    """Some paths a config needs do not exist; the message says how to get
    each."""


_ABSENT = object()


def _lookup(cfg: Config, dotted_key: str) -> Any:
    value = cfg
    for part in dotted_key.split('.'):
        if value is None:  # a parent set to None: the input is not used
            return None
        value = value.get(part, _ABSENT) if hasattr(value, 'get') else _ABSENT
        if value is _ABSENT:
            raise KeyError(
                f'required_paths names {dotted_key!r}, which the config lacks')
    return value


def missing_required_paths(cfg: Config, training: bool = True) -> List[str]:
    """One line per missing path listed in ``cfg.required_paths`` (a path that
    several keys name is reported once); ``training=False`` leaves out the
    ``training_only`` entries."""
    problems, reported = [], set()
    entries = [
        entry for group in cfg.get('required_paths', {}).values()
        for entry in group if training or not entry.get('training_only')
    ]
    for entry in entries:
        path = _lookup(cfg, entry['key'])
        if path is None:
            continue
        if 'root' in entry and not osp.isabs(path):
            path = osp.join(_lookup(cfg, entry['root']), path)
        if 'subpath' in entry:
            path = osp.join(path, entry['subpath'])
        if not osp.exists(path) and path not in reported:
            reported.add(path)
            how = entry['how'].replace('{path}', path)
            problems.append(f'{entry["what"]} not found at {path} (config key '
                            f'{entry["key"]}): {how}')
    return problems


def check_required_paths(cfg: Config, training: bool = True) -> None:
    """Raise :class:`MissingPathsError` listing every missing required path
    (for training, or for testing with ``training=False``)."""
    problems = missing_required_paths(cfg, training)
    if problems:
        raise MissingPathsError(
            'missing input files; nothing is downloaded automatically:\n  ' +
            '\n  '.join(problems))
