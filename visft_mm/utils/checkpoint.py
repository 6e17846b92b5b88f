"""Read checkpoint files safely, with one-sentence errors.

Everything is read with ``torch.load(weights_only=True)``. mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so its own
resume fails on the message hub's ``HistoryBuffer`` and numpy arrays. Rather
than turning the safe loader off (``weights_only=False`` runs arbitrary
pickled code), :func:`allow_mmengine_checkpoints` adds exactly the types an
mmengine checkpoint holds to torch's allow-list.
"""
import os
from typing import Collection, Dict, List, Mapping, Sequence

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

CONTAINER_KEYS = ('state_dict', 'model', 'module')


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or does not fit."""


def describe_keys(keys: Sequence[str], limit: int = 5) -> str:
    """``'a, b, c'`` or ``'a, b, c, ... (12 in total)'``."""
    keys = list(keys)
    shown = ', '.join(keys[:limit])
    return shown if len(
        keys) <= limit else f'{shown}, ... ({len(keys)} in total)'


def state_dict_misfit(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    may_miss: Collection[str] = ()
) -> List[str]:
    """Why ``given`` would not load strictly where ``expected`` is the state
    dict: ``['missing 2 (a, b)', 'unexpected 1 (c)', 'shape mismatches 1 (...)']``,
    empty when it fits. Keys in ``may_miss`` are not reported missing."""
    missing = [k for k in expected if k not in given and k not in may_miss]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f'{k} {tuple(given[k].shape)} in the file vs {tuple(expected[k].shape)}'
        for k in given if k in expected and given[k].shape != expected[k].shape
    ]
    return [
        f'{title} {len(keys)} ({describe_keys(keys, 3)})'
        for title, keys in (('missing', missing), ('unexpected', unexpected),
                            ('shape mismatches', mismatched)) if keys
    ]


def read_torch_file(path) -> object:
    """``torch.load`` (weights only, on CPU) with one-sentence errors."""
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


def unwrap_state_dict(obj, source: str) -> Dict[str, torch.Tensor]:
    """Strip ``{'state_dict' | 'model' | 'module': ...}`` containers and check
    that what is left is a dict of tensors."""
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
    return dict(obj)


def _numpy_pickle_types() -> list:
    core = np._core if hasattr(np, '_core') else np.core
    dtype_classes = [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType')
    ]
    return [
        core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray,
        np.dtype, *dtype_classes
    ]


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine runner checkpoints.

    ``getattr`` is needed because ``HistoryBuffer`` pickles its bound
    statistics methods as ``getattr(buffer, 'mean')``; the weights-only
    unpickler still refuses to call anything not on the allow-list.
    """
    torch.serialization.add_safe_globals(
        [HistoryBuffer, getattr, *_numpy_pickle_types()])


def load_model_state_dict(path) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint file (an mmengine checkpoint's
    ``state_dict``, or a bare state dict), with one-sentence errors."""
    allow_mmengine_checkpoints()
    obj = read_torch_file(path)
    if isinstance(obj, dict) and 'state_dict' not in obj and 'meta' in obj:
        raise CheckpointError(f'{path}: checkpoint has no state_dict')
    return unwrap_state_dict(obj, str(path))
