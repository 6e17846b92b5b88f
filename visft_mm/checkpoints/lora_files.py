"""LoRA weight files: visft_mm's own format, the official ViSFT layout, and
the LoRA of visft_mm stage-2 run checkpoints.

Ours stores rank, alpha and slices next to the tensors::

    {'meta': {'format': 'visft_mm.lora', 'version': 1,
              'layers': {'blocks.0.attn.qkv': {
                  'rank': 64, 'alpha': 1.0, 'slices': [True, False, True]}}},
     'state_dict': {'blocks.0.attn.qkv.lora_A': ...,
                    'blocks.0.attn.qkv.lora_B': ...}}

The official files (``scripts/postprocess/extract_lora_weights.py``) are a flat
dict ``visual.blocks.{i}.attn.qkv.lora_{A,B}`` of loralib ``MergedLinear``
tensors on q and v: rank comes from the shapes and alpha is always 1.

A stage-2 run checkpoint holds the LoRA tensors under
``backbone.module.module.`` (ViSFT's ``LoRAModel`` backbone, its
``FrozenBackbone``, the ViT);
:class:`LoRAMetaHook` stores each layer's settings, keyed by the layer's name
in the checkpoint, in ``meta['lora']`` (older checkpoints, without it, read
like the official files).

The tensor layout is loralib's ``MergedLinear``: for a fused projection of
``S`` slices of width ``d``, with ``n`` of them adapted at rank ``r``,

    lora_A: (n*r, in_features)      lora_B: (n*d, r)
    ΔW[slice_j] = lora_B[j*d:(j+1)*d] @ lora_A[j*r:(j+1)*r] * alpha / r

where ``j`` counts the adapted slices in order. :class:`LoRALinear` computes
its update with :func:`fused_lora_delta`, as merging a file does.
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from .io import (CheckpointError, describe_keys, read_checkpoint, save_atomic,
                 state_dict_misfit)

LORA_FORMAT = 'visft_mm.lora'
LORA_VERSION = 1
OFFICIAL_PREFIXES = ('visual.', 'visft_heads.backbone.0.')
# The ViT of a visft_mm stage-2 run checkpoint: ViSFT.backbone is a LoRAModel
# whose module is a FrozenBackbone of the ViT ('backbone.' + the LoRAModel's
# network_prefix).
RUN_CHECKPOINT_PREFIX = 'backbone.module.module.'
# Where a run checkpoint's meta holds the settings of its LoRA layers.
RUN_META_KEY = 'lora'
OFFICIAL_EXPORT_PREFIX = 'visual.'
OFFICIAL_ALPHA = 1.
QV_SLICES = (True, False, True)
QKV_LAYER = re.compile(r'(.+\.)?qkv')
QKV_SLICE_NAMES = 'qkv'
LORA_TENSORS = ('lora_A', 'lora_B')


def is_lora_key(name: str) -> bool:
    """Whether a parameter name is a LoRA tensor (``...lora_A`` or
    ``...lora_B``)."""
    return name.rsplit('.', 1)[-1] in LORA_TENSORS


def parse_slices(
        slices: Union[None, str,
                      Sequence[bool]]) -> Optional[Tuple[bool, ...]]:
    """``'qv'`` → (True, False, True); a bool sequence passes through; None
    means the whole output is one adapted slice."""
    if slices is None:
        return None
    if isinstance(slices, str):
        unknown = set(slices) - set(QKV_SLICE_NAMES)
        if unknown or not slices:
            raise ValueError(
                f"slices must be letters of 'qkv', got {slices!r}")
        return tuple(name in slices for name in QKV_SLICE_NAMES)
    mask = tuple(bool(s) for s in slices)
    if not any(mask):
        raise ValueError('slices adapts nothing')
    return mask


def fused_lora_delta(lora_A: torch.Tensor, lora_B: torch.Tensor,
                     slices: Optional[Sequence[bool]],
                     scaling: float) -> torch.Tensor:
    """The full (out_features, in_features) weight update of a fused LoRA,
    zero on slices that are not adapted. Computed in float32."""
    mask = tuple(slices) if slices is not None else (True, )
    n = sum(mask)
    rank = lora_A.shape[0] // n
    width = lora_B.shape[0] // n
    if lora_A.shape[0] != n * rank or lora_B.shape != (n * width, rank):
        raise ValueError(
            f'LoRA shapes A{tuple(lora_A.shape)} B{tuple(lora_B.shape)} do '
            f'not fit {n} adapted slices')
    A, B = lora_A.float(), lora_B.float()
    delta = A.new_zeros(len(mask) * width, A.shape[1])
    j = 0
    for s, enabled in enumerate(mask):
        if enabled:
            delta[s * width:(s + 1) *
                  width] = (B[j * width:(j + 1) * width]
                            @ A[j * rank:(j + 1) * rank]) * scaling
            j += 1
    return delta


@dataclass
class LoRAWeights:
    """LoRA tensors keyed ``{layer}.lora_A`` / ``{layer}.lora_B`` with layer
    names relative to the backbone, and per layer ``rank``, ``alpha`` and
    ``slices`` (a bool tuple, or None for one unsliced output)."""
    state_dict: Dict[str, torch.Tensor]
    layers: Dict[str, dict]
    layout: str = 'visft_mm'


def lora_layers_meta(lora_model, prefix: str = '') -> Dict[str, dict]:
    """Rank, alpha and slices of each layer of ``lora_model`` (a
    :class:`LoRAModel`) as files store them, keyed ``prefix + layer name``."""
    return {
        prefix + name:
        dict(
            rank=cfg['rank'],
            alpha=float(cfg['alpha']),
            slices=list(cfg['slices']) if cfg['slices'] is not None else None)
        for name, cfg in lora_model.lora_config().items()
    }


def save_lora(lora_model, path) -> None:
    """Write the LoRA tensors and settings of ``lora_model`` (a
    :class:`LoRAModel`) in our format."""
    layers = lora_layers_meta(lora_model)
    state_dict = {k: v.cpu() for k, v in lora_model.lora_state_dict().items()}
    save_atomic(
        {
            'meta': dict(
                format=LORA_FORMAT, version=LORA_VERSION, layers=layers),
            'state_dict': state_dict
        }, path)


def _natural_key(name: str) -> str:
    """Sort key that puts blocks.2 before blocks.10."""
    return re.sub(r'\d+', lambda m: m.group().zfill(10), name)


def _check_layer(name: str, layer: dict, sd: Dict[str, torch.Tensor],
                 source: str) -> None:
    """Check that the A/B tensors of one layer fit its rank and slices."""
    A, B = sd[f'{name}.lora_A'], sd[f'{name}.lora_B']
    n = sum(layer['slices']) if layer['slices'] is not None else 1
    rank = layer['rank']
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != n * rank \
            or B.shape[1] != rank or B.shape[0] % n:
        raise CheckpointError(
            f'{source}: LoRA layer {name} has A{tuple(A.shape)} and '
            f'B{tuple(B.shape)}, which do not fit rank {rank} on {n} slices')


def _stored_layers(meta_layers: Dict[str, dict], sd: Dict[str, torch.Tensor],
                   source: str, alpha: Optional[float],
                   slices: Optional[Sequence[bool]]) -> Dict[str, dict]:
    """The layer settings a file stores, checked against its tensors and
    against the ``alpha`` and ``slices`` asked for (None: the stored)."""
    layers = {
        name:
        dict(
            rank=int(cfg['rank']),
            alpha=float(cfg['alpha']),
            slices=parse_slices(cfg['slices']))
        for name, cfg in meta_layers.items()
    }
    misfit = state_dict_misfit(
        dict.fromkeys(f'{name}.{p}' for name in layers for p in LORA_TENSORS),
        sd)
    if misfit:
        raise CheckpointError(
            f'{source}: tensors do not match the layers in its meta: {misfit}')
    for setting, requested in (('alpha',
                                None if alpha is None else float(alpha)),
                               ('slices', slices)):
        stored = {layer[setting] for layer in layers.values()}
        if requested is not None and stored != {requested}:
            raise ValueError(
                f'{source}: {setting} {requested} was requested but the file '
                f'stores {setting} {sorted(stored, key=str)}; leave {setting} '
                'unset for files that store it')
    for name, layer in layers.items():
        _check_layer(name, layer, sd, source)
    return layers


def _load_ours(sd: Dict[str, torch.Tensor], meta: dict, source: str,
               alpha: Optional[float],
               slices: Optional[Sequence[bool]]) -> LoRAWeights:
    if meta.get('version') != LORA_VERSION:
        raise CheckpointError(
            f'{source}: unsupported {LORA_FORMAT} version '
            f'{meta.get("version")!r} (this code reads {LORA_VERSION})')
    layers = _stored_layers(meta['layers'], sd, source, alpha, slices)
    return LoRAWeights(state_dict=sd, layers=layers, layout='visft_mm')


def _load_official(sd: Dict[str,
                            torch.Tensor], source: str, alpha: Optional[float],
                   slices: Sequence[bool]) -> LoRAWeights:
    not_lora = [k for k in sd if not is_lora_key(k)]
    if not_lora:
        raise CheckpointError(
            f'{source}: not a LoRA file, it holds non-LoRA tensors '
            f'({describe_keys(not_lora)})')
    prefix = next(
        (p for p in OFFICIAL_PREFIXES if all(k.startswith(p) for k in sd)),
        None)
    if prefix is None:
        raise CheckpointError(
            f'{source}: LoRA keys are not all under one of the official '
            f'prefixes {OFFICIAL_PREFIXES} (e.g. {next(iter(sd))})')
    sd = {k[len(prefix):]: v for k, v in sd.items()}
    names = sorted({k.rsplit('.', 1)[0] for k in sd}, key=_natural_key)
    unpaired = [
        n for n in names if f'{n}.lora_A' not in sd or f'{n}.lora_B' not in sd
    ]
    if unpaired:
        raise CheckpointError(
            f'{source}: LoRA layers without both lora_A and lora_B: '
            f'{describe_keys(unpaired)}')
    n = sum(slices)
    layers = {}
    for name in names:
        A = sd[f'{name}.lora_A']
        if A.dim() != 2 or A.shape[0] % n:
            raise CheckpointError(
                f'{source}: LoRA layer {name} has lora_A {tuple(A.shape)}, '
                f'whose rows do not split into its {n} adapted slices')
        layers[name] = dict(
            rank=A.shape[0] // n,
            alpha=float(OFFICIAL_ALPHA if alpha is None else alpha),
            slices=tuple(slices))
        _check_layer(name, layers[name], sd, source)
    return LoRAWeights(state_dict=sd, layers=layers, layout='official')


def load_lora(path,
              alpha: Optional[float] = None,
              slices: Union[None, str, Sequence[bool]] = None) -> LoRAWeights:
    """Read LoRA weights: our file format, the official ViSFT layout, or a
    visft_mm stage-2 run checkpoint (its
    ``backbone.module.module.*.lora_A/B``).

    Args:
        path: The file.
        alpha: The LoRA alpha of files that do not store it (official files,
            run checkpoints saved without ``meta['lora']``): default 1, what
            ViSFT uses. A file that stores its alpha refuses another value.
        slices: The adapted slices of each fused layer, likewise: default q
            and v for files that do not store them.
    """
    source = os.fspath(path)
    sd, meta = read_checkpoint(path)
    slices = parse_slices(slices)
    if meta.get('format') == LORA_FORMAT:
        return _load_ours(sd, meta, source, alpha, slices)
    run_lora = {
        k[len(RUN_CHECKPOINT_PREFIX):]: v
        for k, v in sd.items()
        if k.startswith(RUN_CHECKPOINT_PREFIX) and is_lora_key(k)
    }
    if not run_lora:
        return _load_official(sd, source, alpha, slices or QV_SLICES)
    stored = {
        name[len(RUN_CHECKPOINT_PREFIX):]: layer
        for name, layer in meta.get(RUN_META_KEY, {}).items()
        if name.startswith(RUN_CHECKPOINT_PREFIX)
    }
    if stored:
        layers = _stored_layers(stored, run_lora, source, alpha, slices)
        return LoRAWeights(run_lora, layers, layout='visft_mm_run')
    # A run checkpoint saved without its LoRA settings: rank from the
    # shapes, as in the official files.
    weights = _load_official({
        f'visual.{k}': v
        for k, v in run_lora.items()
    }, source, alpha, slices or QV_SLICES)
    weights.layout = 'visft_mm_run'
    return weights


def describe_lora(weights: LoRAWeights) -> str:
    """One line for a tool's report: ``official layout, 40 layers, rank 64,
    alpha 1``."""
    ranks = sorted({layer['rank'] for layer in weights.layers.values()})
    alphas = sorted({layer['alpha'] for layer in weights.layers.values()})
    return (f'{weights.layout} layout, {len(weights.layers)} layers, '
            f'rank {"/".join(map(str, ranks))}, '
            f'alpha {"/".join(f"{a:g}" for a in alphas)}')


def to_official_layout(weights: LoRAWeights) -> Dict[str, torch.Tensor]:
    """The flat ``visual.``-prefixed dict the official ViSFT code writes.

    Raises:
        ValueError: a layer is not a ``qkv`` with LoRA on q and v and alpha 1,
            which the official layout (always alpha 1, q and v) cannot express.
    """
    unfit = [
        f'{name} (slices {layer["slices"]}, alpha {layer["alpha"]})'
        for name, layer in weights.layers.items()
        if not QKV_LAYER.fullmatch(name) or tuple(layer['slices'] or ()) !=
        QV_SLICES or layer['alpha'] != OFFICIAL_ALPHA
    ]
    if unfit:
        raise ValueError(
            'the official ViSFT LoRA layout only holds qkv layers with LoRA '
            f'on q and v and alpha 1, which does not fit '
            f'{describe_keys(unfit, 3)}')
    return {
        f'{OFFICIAL_EXPORT_PREFIX}{key}': tensor
        for key, tensor in weights.state_dict.items()
    }


def merge_lora_state_dict(backbone_sd: Dict[str, torch.Tensor],
                          weights: LoRAWeights) -> Dict[str, torch.Tensor]:
    """A copy of ``backbone_sd`` with each LoRA update added to its layer's
    weight, ``W + ΔW`` computed in float32 and cast back to W's dtype.

    Raises:
        KeyError: a LoRA layer has no ``{layer}.weight`` in ``backbone_sd``.
        ValueError: the update's shape differs from the weight's.
    """
    merged = dict(backbone_sd)
    for name, layer in weights.layers.items():
        key = f'{name}.weight'
        if key not in merged:
            raise KeyError(
                f'LoRA layer {name} has no {key} in the backbone state dict')
        delta = fused_lora_delta(weights.state_dict[f'{name}.lora_A'],
                                 weights.state_dict[f'{name}.lora_B'],
                                 layer['slices'],
                                 layer['alpha'] / layer['rank'])
        weight = merged[key]
        if delta.shape != weight.shape:
            raise ValueError(
                f'LoRA layer {name} gives a {tuple(delta.shape)} update for '
                f'the {tuple(weight.shape)} weight {key}')
        merged[key] = (weight.float() + delta).to(weight.dtype)
    return merged
