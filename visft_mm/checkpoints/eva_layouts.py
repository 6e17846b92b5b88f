"""Recognise EVA vision-tower checkpoints and convert them to EVAViT keys.

Every key of a file is accounted for (kept, dropped with a reason, or an
error), so a wrong or partial checkpoint never loads silently, as it does with
the official ``load_state_dict(strict=False)``. Layouts, by their keys:

* ``lavis``: LAVIS ``eva_vit_g.pth``, bare keys with ``cls_token`` (``norm.*``
  may be absent);
* ``visft_visual``: the official ViSFT visual file, bare keys, no
  ``cls_token``;
* ``eva_clip``: a full EVA-CLIP checkpoint (``visual.*``, ``text.*``,
  ``logit_scale``); the text tower and the CLIP projection ``visual.head`` go;
* ``visft_mm``: a visft_mm / mmengine model checkpoint (``backbone.*``,
  ``backbone.module.*`` for a ``FrozenBackbone``, or
  ``backbone.module.module.*`` for LoRA in one);
* ``lavis_blip2``: a LAVIS BLIP-2 model (``visual_encoder.*``);
* ``visft_train``: an official ViSFT training checkpoint
  (``visft_heads.backbone.0.*``).

A DDP ``module.`` prefix on every key, and ``{'state_dict' | 'model' |
'module': ...}`` containers, are unwrapped first (:mod:`.io`).

Whether the blocks are post-norm (EVA-ViT-E) cannot be read from the keys or
shapes. The files ``eva2visft.py`` and ``merge_lora.py`` write record it,
with the rest of the arch, as ``{'meta': {'arch': {...}}, 'state_dict':
...}``, and it is read back from there; for other files it is inferred from
the width (EVA-ViT-E's 1792).

:func:`load_eva_weights` loads a file into an EVAViT, :func:`load_backbone`
reads one for the tools (unmerged LoRA refused, a LoRA file merged), and
:func:`eva_clip_model_weights` maps a full EVA-CLIP checkpoint onto the keys
of :class:`EVACLIP`.
"""
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .io import (CheckpointError, describe_keys, read_checkpoint, save_atomic,
                 state_dict_misfit)
from .lora_files import (RUN_CHECKPOINT_PREFIX, LoRAWeights, is_lora_key,
                         load_lora, merge_lora_state_dict)

# Prefixes under which a model checkpoint holds the vision tower.
TOWER_PREFIXES = {
    'visual.': 'eva_clip',
    'backbone.': 'visft_mm',
    'backbone.module.': 'visft_mm',
    RUN_CHECKPOINT_PREFIX: 'visft_mm',
    'visual_encoder.': 'lavis_blip2',
    'visft_heads.backbone.0.': 'visft_train',
}
PATCH_EMBED_WEIGHT = 'patch_embed.proj.weight'
NORM_KEYS = ('norm.weight', 'norm.bias')
EMBED_KEYS = ('pos_embed', PATCH_EMBED_WEIGHT, 'patch_embed.proj.bias')
BLOCK_PARAMS = (
    'norm1.weight',
    'norm1.bias',
    'attn.q_bias',
    'attn.v_bias',
    'attn.qkv.weight',
    'attn.proj.weight',
    'attn.proj.bias',
    'norm2.weight',
    'norm2.bias',
    'mlp.fc1.weight',
    'mlp.fc1.bias',
    'mlp.fc2.weight',
    'mlp.fc2.bias',
)
BLOCK_KEY = re.compile(r'blocks\.(\d+)\.(.+)')
CLIP_HEAD_PREFIX = 'head.'
# Width of EVA02-CLIP-E's vision tower (EVA-ViT-E), whose blocks are post-norm.
EVA_E_WIDTH = 1792
# Where files written by the converters record the arch of their backbone.
ARCH_META_KEY = 'arch'
# A full EVA-CLIP checkpoint: its vision tower, the tower's projection head,
# the text tower and the logit scale.
EVA_CLIP_VISUAL_PREFIX = 'visual.'
EVA_CLIP_TEXT_PREFIX = 'text.'
EVA_CLIP_LOGIT_SCALE = 'logit_scale'

# EVA variants whose parameters EVAViT has no place for (EVA-02 B/L,
# EVA-02-CLIP B/L, BEiT-style towers), recognised by a key of the vision
# tower.
UNSUPPORTED_FEATURES = (
    (re.compile(r'(^|\.)rope\.'), 'rotary position embedding (rope.*)'),
    (re.compile(r'\.(mlp|ffn)\.w\d+\.'), 'SwiGLU MLP (mlp.w12 / mlp.w3)'),
    (re.compile(r'(^|\.)(ffn_ln|inner_attn_ln|subln)\.'),
     'sub-LayerNorm (subln, ffn_ln)'),
    (re.compile(r'rel_pos_bias|relative_position'), 'relative position bias'),
    (re.compile(r'\.gamma_[12]$'), 'layer scale (gamma_1, gamma_2)'),
    (re.compile(r'\.attn\.[qkv]_proj\.'), 'separate q/k/v projections'),
)

NORM_DEFAULT_INIT_NOTE = (
    'the model will use the default LayerNorm init: weight 1, bias 0 '
    '(as the official ViSFT code does)')


def missing_norm_warning(source: str, missing: Sequence[str]) -> str:
    """The block of WARNING lines a tool prints for a file without the final
    LayerNorm."""
    rule = 'WARNING ' + '=' * 70
    return '\n'.join([
        rule, f'WARNING: {source} has no final LayerNorm '
        f'({", ".join(missing)});', f'WARNING: {NORM_DEFAULT_INIT_NOTE}.', rule
    ])


@dataclass
class ConvertedCheckpoint:
    """An EVAViT state dict and what the conversion did to the source keys.

    Attributes:
        state_dict: Tensors under EVAViT's names.
        layout: Detected layout (see the module docstring).
        kept: Source keys that made it into ``state_dict``.
        dropped: Source keys left out (text tower, CLIP head, LoRA, ...).
        missing: EVAViT keys the source lacks, e.g. ``norm.*`` of LAVIS files.
        arch: Inferred ``embed_dims``, ``num_layers``,
            ``feedforward_channels``.
        prefix: Prefix of the vision tower's keys in the source.
        post_norm: Whether the blocks are post-norm, as the file records
            it; None if it does not.
    """
    state_dict: Dict[str, torch.Tensor]
    layout: str
    kept: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    arch: Dict[str, int] = field(default_factory=dict)
    prefix: str = ''
    post_norm: Optional[bool] = None

    def arch_record(self) -> dict:
        """The arch for the meta of a converted file, ``post_norm`` in (as
        recorded, else inferred from the width)."""
        post_norm = self.post_norm
        if post_norm is None:
            post_norm = infer_post_norm(self.state_dict)
        return dict(self.arch, post_norm=post_norm)

    def dropped_groups(self) -> List[str]:
        """Dropped keys grouped for a report: ``['text.* (N tensors)',
        'logit_scale', 'visual.head.* (2 tensors)']``."""
        groups: Counter = Counter()
        for key in self.dropped:
            if is_lora_key(key):
                groups['LoRA *.lora_A/*.lora_B'] += 1
                continue
            prefix = self.prefix if key.startswith(self.prefix) else ''
            head, dot, _ = key[len(prefix):].partition('.')
            groups[prefix + head + ('.*' if dot else '')] += 1
        return [
            name if count == 1 and not name.endswith('.*') else
            f'{name} ({count} tensor{"s" if count > 1 else ""})'
            for name, count in groups.items()
        ]


def refuse_unmerged_lora(converted: 'ConvertedCheckpoint',
                         source: str) -> None:
    """Raise if the file held LoRA tensors: using its base weights alone would
    silently test or export the model without its LoRA."""
    lora = [k for k in converted.dropped if is_lora_key(k)]
    if lora:
        raise CheckpointError(
            f'{source}: holds {len(lora)} LoRA tensors, which would be '
            'ignored; merge them into the backbone first with '
            'tools/model_converters/merge_lora.py')


def _find_tower(sd: Dict[str, torch.Tensor], source: str):
    """Prefix of the vision tower's keys and the layout it implies."""
    if PATCH_EMBED_WEIGHT in sd:
        return '', 'lavis' if 'cls_token' in sd else 'visft_visual'
    for prefix, layout in TOWER_PREFIXES.items():
        if prefix + PATCH_EMBED_WEIGHT in sd:
            return prefix, layout
    known = ', '.join(repr(p) for p in ('', *TOWER_PREFIXES))
    raise CheckpointError(
        f'{source}: not an EVA vision-tower checkpoint (no '
        f'{PATCH_EMBED_WEIGHT} under any known prefix: {known})')


def _check_supported(names: Sequence[str], source: str) -> None:
    for pattern, feature in UNSUPPORTED_FEATURES:
        hits = [n for n in names if pattern.search(n)]
        if hits:
            raise CheckpointError(
                f'{source}: unsupported EVA variant with {feature} '
                f'(e.g. {hits[0]}), which EVAViT cannot represent')


def infer_post_norm(state_dict: Dict[str, torch.Tensor]) -> bool:
    """Whether EVAViT keys ``state_dict`` are of post-norm blocks, as far as
    the width tells (only EVA-ViT-E's are)."""
    return state_dict[PATCH_EMBED_WEIGHT].shape[0] == EVA_E_WIDTH


def eva_vit_keys(num_layers: int) -> List[str]:
    """The state-dict keys of an EVAViT with ``num_layers`` blocks, a cls
    token and a final norm."""
    return [
        'cls_token', *EMBED_KEYS, *(f'blocks.{i}.{p}'
                                    for i in range(num_layers)
                                    for p in BLOCK_PARAMS), *NORM_KEYS
    ]


def convert_eva_state_dict(sd: Dict[str, torch.Tensor],
                           source: str = 'state dict') -> ConvertedCheckpoint:
    """Convert a state dict in any supported layout to EVAViT's keys.

    Args:
        sd: The source state dict (containers and DDP prefix already
            unwrapped).
        source: How error messages name the source, e.g. its path.

    Raises:
        CheckpointError: unrecognised file, unsupported EVA variant, keys of
            the vision tower EVAViT has no place for, or no blocks at all.
    """
    prefix, layout = _find_tower(sd, source)
    _check_supported([k[len(prefix):] for k in sd if k.startswith(prefix)],
                     source)

    tower, dropped = {}, []
    for key in sd:
        name = key[len(prefix):]
        if not key.startswith(prefix) or is_lora_key(name) or name.startswith(
                CLIP_HEAD_PREFIX):
            dropped.append(key)
        else:
            tower[name] = sd[key]
    block_ids = {
        int(match.group(1))
        for match in map(BLOCK_KEY.fullmatch, tower)
        if match and match.group(2) in BLOCK_PARAMS
    }
    num_layers = max(block_ids) + 1 if block_ids else 0
    misfit = state_dict_misfit(
        dict.fromkeys(eva_vit_keys(num_layers)), tower, may_miss=['cls_token'])
    if misfit.unexpected:
        unknown = [prefix + name for name in misfit.unexpected]
        raise CheckpointError(
            f'{source}: {len(unknown)} keys of the {layout} vision tower '
            f'have no place in EVAViT: {describe_keys(unknown)}')
    if not num_layers:
        raise CheckpointError(
            f'{source}: the {layout} checkpoint has no transformer blocks')
    fc1 = tower.get('blocks.0.mlp.fc1.weight')
    arch = dict(
        embed_dims=tower[PATCH_EMBED_WEIGHT].shape[0],
        num_layers=num_layers,
        feedforward_channels=fc1.shape[0] if fc1 is not None else None)
    return ConvertedCheckpoint(
        state_dict=tower,
        layout=layout,
        kept=[prefix + name for name in tower],
        dropped=dropped,
        missing=misfit.missing,
        arch=arch,
        prefix=prefix)


def load_eva_checkpoint(path) -> ConvertedCheckpoint:
    """Read ``path`` and convert it (:func:`convert_eva_state_dict`), with
    ``post_norm`` as the file records it, if it does."""
    checkpoint = read_checkpoint(path)
    converted = convert_eva_state_dict(
        checkpoint.state_dict, source=os.fspath(path))
    recorded = checkpoint.meta.get(ARCH_META_KEY, {})
    if 'post_norm' in recorded:
        converted.post_norm = bool(recorded['post_norm'])
    return converted


def save_backbone(state_dict: Dict[str, torch.Tensor], arch: dict,
                  path) -> None:
    """Write an EVAViT state dict with its ``arch`` (``post_norm`` in) in
    the meta, which :func:`load_eva_checkpoint` reads back."""
    save_atomic({
        'meta': {
            ARCH_META_KEY: dict(arch)
        },
        'state_dict': state_dict
    }, path)


def check_post_norm(converted: ConvertedCheckpoint, post_norm: bool,
                    source: str) -> None:
    """Raise if the file records blocks of the other kind than a model whose
    blocks are post-norm iff ``post_norm``: the keys and shapes would fit and
    the features differ."""
    if converted.post_norm is not None and converted.post_norm != post_norm:
        kinds = {True: 'post-norm', False: 'pre-norm'}
        raise CheckpointError(
            f'{source}: records {kinds[converted.post_norm]} blocks, the '
            f'model has {kinds[post_norm]} ones (post_norm in its arch)')


@dataclass
class Backbone:
    """An EVA backbone read for use, and where it came from.

    Attributes:
        state_dict: EVAViT keys, LoRA merged when one was given.
        converted: What the file held and how it was read.
        lora: The merged LoRA weights, if any.
    """
    state_dict: Dict[str, torch.Tensor]
    converted: ConvertedCheckpoint
    lora: Optional[LoRAWeights] = None

    @property
    def layout(self) -> str:
        return self.converted.layout

    @property
    def num_layers(self) -> int:
        return self.converted.arch['num_layers']

    @property
    def post_norm(self) -> Optional[bool]:
        """As the file records it; None if it does not."""
        return self.converted.post_norm


def load_backbone(path,
                  lora_path=None,
                  alpha: Optional[float] = None) -> Backbone:
    """Read an EVA backbone in any supported layout for a tool to convert or
    export, merging the LoRA file at ``lora_path`` (any layout
    :func:`load_lora` reads) into it.

    Raises:
        CheckpointError: unreadable or incomplete backbone (only ``norm.*``
            may be missing), a backbone holding unmerged LoRA tensors, or a
            LoRA file that does not fit it.
    """
    converted = load_eva_checkpoint(path)
    refuse_unmerged_lora(converted, os.fspath(path))
    incomplete = [k for k in converted.missing if k not in NORM_KEYS]
    if incomplete:
        raise CheckpointError(
            f'{os.fspath(path)}: incomplete {converted.layout} checkpoint, '
            f'missing {describe_keys(incomplete)}')
    state_dict, lora = converted.state_dict, None
    if lora_path is not None:
        lora = load_lora(lora_path, alpha=alpha)
        try:
            state_dict = merge_lora_state_dict(state_dict, lora)
        except (KeyError, ValueError) as e:
            message = e.args[0] if e.args else str(e)
            raise CheckpointError(
                f'{message} ({os.fspath(lora_path)} does not fit '
                f'{os.fspath(path)})') from e
    return Backbone(state_dict=state_dict, converted=converted, lora=lora)


def eva_clip_model_weights(clip_sd: Dict[str, torch.Tensor],
                           source: str) -> Dict[str, torch.Tensor]:
    """The tensors of an original EVA-CLIP checkpoint under the names of
    :class:`EVACLIP`: the vision tower's EVAViT keys under ``visual.``, its
    projection ``visual.head.*`` as ``visual_proj.*``, ``text.*`` and
    ``logit_scale`` as they are.

    Raises:
        CheckpointError: not a full EVA-CLIP checkpoint, unmerged LoRA
            tensors, or keys that belong to none of its parts.
    """
    converted = convert_eva_state_dict(clip_sd, source=source)
    if converted.layout != 'eva_clip':
        raise CheckpointError(
            f'{source}: a {converted.layout} vision-tower checkpoint, not a '
            'full EVA-CLIP one (visual.*, text.*, logit_scale); pass it '
            'as backbone_checkpoint')
    refuse_unmerged_lora(converted, source)
    head_prefix = EVA_CLIP_VISUAL_PREFIX + CLIP_HEAD_PREFIX
    weights = {
        EVA_CLIP_VISUAL_PREFIX + k: v
        for k, v in converted.state_dict.items()
    }
    unknown = []
    for key, value in clip_sd.items():
        if key.startswith(head_prefix):
            weights['visual_proj.' + key[len(head_prefix):]] = value
        elif key.startswith(EVA_CLIP_TEXT_PREFIX) or \
                key == EVA_CLIP_LOGIT_SCALE:
            weights[key] = value
        elif not key.startswith(EVA_CLIP_VISUAL_PREFIX):
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f'{source}: {len(unknown)} keys are neither visual.*, text.* '
            f'nor logit_scale: {describe_keys(unknown)}')
    return weights


def load_eva_weights(model: nn.Module, path) -> ConvertedCheckpoint:
    """Load an EVA checkpoint of any supported layout into ``model`` (an
    :class:`EVAViT`, possibly with LoRA layers injected).

    Unused ``cls_token`` / ``norm.*`` (model built without them) are skipped
    with an INFO line; missing ``norm.*`` is a WARNING (the final LayerNorm
    keeps weight 1, bias 0). Any other missing or unexpected key, a shape
    mismatch, unmerged LoRA tensors in the file or a recorded ``post_norm``
    other than the model's raise :class:`CheckpointError` before anything is
    loaded.
    """
    path = os.fspath(path)
    converted = load_eva_checkpoint(path)
    refuse_unmerged_lora(converted, path)
    check_post_norm(converted,
                    bool(model.arch_settings.get('post_norm', False)), path)
    weights = dict(converted.state_dict)
    own = {k: v for k, v in model.state_dict().items() if not is_lora_key(k)}

    if 'cls_token' in weights and 'cls_token' not in own:
        del weights['cls_token']
        print_log(
            f'{path}: cls_token is unused with with_cls_token=False',
            logger='current',
            level=logging.INFO)
    if any(k in weights for k in NORM_KEYS) and not any(k in own
                                                        for k in NORM_KEYS):
        for key in NORM_KEYS:
            weights.pop(key, None)
        print_log(
            f'{path}: norm.* is unused with final_norm=False',
            logger='current',
            level=logging.INFO)

    misfit = state_dict_misfit(own, weights, may_miss=NORM_KEYS)
    if misfit:
        raise CheckpointError(
            f'{path}: the {converted.layout} checkpoint does not fit '
            f'{type(model).__name__}: {misfit}')
    missing_norm = [k for k in NORM_KEYS if k in own and k not in weights]
    if missing_norm:
        print_log(
            f'{path}: the checkpoint has no final LayerNorm '
            f'({", ".join(missing_norm)}); {NORM_DEFAULT_INIT_NOTE}',
            logger='current',
            level=logging.WARNING)
    model.load_state_dict(weights, strict=False)
    print_log(
        f'{path}: loaded {len(weights)} tensors of the {converted.layout} '
        'layout',
        logger='current',
        level=logging.INFO)
    return converted
