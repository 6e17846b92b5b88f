"""Read and write checkpoint files safely, and report how a state dict misfits.

Everything is read with ``torch.load(weights_only=True)``; the types an
mmengine run checkpoint holds besides tensors are on torch's allow-list once
visft_mm is imported (:func:`visft_mm.openmmlab.allow_mmengine_checkpoints`).

Every strict fit check of visft_mm goes through :func:`state_dict_misfit`, so
a missing key, a surplus key (e.g. a block the model does not have) and a
shape mismatch are reported the same way, key by key, wherever a file is
loaded.
"""
import os
import tempfile
from dataclasses import dataclass, field
from typing import (Callable, Collection, Dict, List, Mapping, NamedTuple,
                    Sequence)

import torch
import torch.nn as nn

CONTAINER_KEYS = ('state_dict', 'model', 'module')
# The prefix DDP (and mmengine's model wrappers) put on every key.
DDP_PREFIX = 'module.'

ShapeFits = Callable[[str, torch.Size, torch.Size], bool]


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or does not fit."""


class Checkpoint(NamedTuple):
    """The state dict of a checkpoint file and its ``meta`` ({} if none)."""
    state_dict: Dict[str, torch.Tensor]
    meta: dict


def describe_keys(keys: Sequence[str], limit: int = 5) -> str:
    """``'a, b, c'`` or ``'a, b, c, ... (12 in total)'``."""
    keys = list(keys)
    shown = ', '.join(keys[:limit])
    return shown if len(
        keys) <= limit else f'{shown}, ... ({len(keys)} in total)'


def same_shape(key: str, given: torch.Size, expected: torch.Size) -> bool:
    """The shape rule of a strict ``load_state_dict``."""
    return given == expected


@dataclass
class Misfit:
    """Why a state dict would not load strictly: keys it lacks, keys it has
    that nothing takes, and keys of another shape. Empty (falsy) when it
    fits."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def problems(self) -> List[str]:
        """``['missing 2 (a, b)', 'unexpected 1 (c)', 'shape mismatches 1
        (d (2,) in the file vs (3,))']``, empty when it fits."""
        return [
            f'{title} {len(keys)} ({describe_keys(keys, 3)})'
            for title, keys in (('missing', self.missing), ('unexpected',
                                                            self.unexpected),
                                ('shape mismatches', self.mismatched)) if keys
        ]

    def __str__(self) -> str:
        return '; '.join(self.problems())


def state_dict_misfit(expected: Mapping[str, object],
                      given: Mapping[str, object],
                      may_miss: Collection[str] = (),
                      shape_fits: ShapeFits = same_shape) -> Misfit:
    """How ``given`` misfits where ``expected`` is the state dict. Keys in
    ``may_miss`` are not reported missing; shapes are compared where both
    values have one, by ``shape_fits``."""
    missing = [k for k in expected if k not in given and k not in may_miss]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f'{k} {tuple(given[k].shape)} in the file vs '
        f'{tuple(expected[k].shape)}' for k in given
        if hasattr(given[k], 'shape') and hasattr(expected.get(k), 'shape')
        and not shape_fits(k, given[k].shape, expected[k].shape)
    ]
    return Misfit(missing, unexpected, mismatched)


def module_misfit(module: nn.Module,
                  state_dict: Mapping[str, torch.Tensor],
                  shape_fits: ShapeFits = same_shape) -> Misfit:
    """How ``state_dict`` misfits ``module`` under a strict load.

    Submodules that keep weights out of their checkpoints (a
    ``FrozenBackbone``, whose ``excluded_state_keys`` names them) accept a
    file holding none of those weights or all of them, as their load hooks
    do.
    """
    expected = dict(module.state_dict())
    tensors = {
        **dict(module.named_parameters(remove_duplicate=False)),
        **dict(module.named_buffers(remove_duplicate=False))
    }
    for prefix, sub in module.named_modules():
        if not hasattr(sub, 'excluded_state_keys'):
            continue
        excluded = [
            f'{prefix}.{key}' if prefix else key
            for key in sub.excluded_state_keys()
        ]
        if any(key in state_dict for key in excluded):
            expected.update({key: tensors[key] for key in excluded})
    return state_dict_misfit(expected, state_dict, shape_fits=shape_fits)


def read_torch_file(path) -> object:
    """``torch.load`` (weights only, on CPU, mmengine checkpoints allowed)
    with one-sentence errors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt file
        lines = str(e).strip().splitlines()
        reason = f'{type(e).__name__}: {lines[0][:200]}' if lines else type(
            e).__name__
        raise CheckpointError(
            f'{path}: cannot read the checkpoint ({reason})') from e


def strip_ddp_prefix(state_dict: Mapping[str, object]) -> dict:
    """``state_dict`` without the ``module.`` that DDP puts on every key
    (unchanged unless every key has it)."""
    if state_dict and all(k.startswith(DDP_PREFIX) for k in state_dict):
        return {k[len(DDP_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def unwrap_state_dict(obj, source: str) -> Dict[str, torch.Tensor]:
    """Strip ``{'state_dict' | 'model' | 'module': ...}`` containers and the
    DDP ``module.`` prefix, and check that what is left is a dict of
    tensors."""
    while isinstance(obj, dict):
        inner = next(
            (obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)),
            None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f'{source}: expected a state dict of tensors, '
                              f'found a {type(obj).__name__}')
    if not obj:
        raise CheckpointError(f'{source}: the state dict is empty')
    not_tensors = [
        k for k, v in obj.items() if not isinstance(v, torch.Tensor)
    ]
    if not_tensors:
        raise CheckpointError(
            f'{source}: expected a state dict of tensors, but '
            f'{describe_keys(map(str, not_tensors))} are not tensors')
    return strip_ddp_prefix(obj)


def read_checkpoint(path) -> Checkpoint:
    """The weights of a checkpoint file (an mmengine checkpoint's
    ``state_dict``, a visft_mm file's, or a bare state dict) and its
    ``meta``, with one-sentence errors."""
    obj = read_torch_file(path)
    if isinstance(obj, dict) and 'meta' in obj and 'state_dict' not in obj:
        raise CheckpointError(f'{os.fspath(path)}: checkpoint has no '
                              'state_dict')
    meta = obj.get('meta') if isinstance(obj, dict) else None
    return Checkpoint(
        unwrap_state_dict(obj, os.fspath(path)),
        meta if isinstance(meta, dict) else {})


def load_model_state_dict(path) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path).state_dict


def save_atomic(obj, path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same
    directory (created if needed), fsync'ed and moved into place with
    ``os.replace``; on any error the temporary file is removed and ``path``
    is left untouched, so no truncated checkpoint is ever left behind."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        prefix=f'.{name}.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
