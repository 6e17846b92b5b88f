"""Export a (LoRA-merged) EVAViT to the layouts of the models that consume it.

Hand-written because nothing installed converts *to* these layouts:
mmpretrain's ``eva_to_mmpretrain.py`` only goes from EVA to mmpretrain (and
keeps a ``backbone.`` prefix), open_clip reads original EVA-CLIP files only
through timm's ``checkpoint_filter_fn``, and LAVIS is not a dependency.
Targets:

* **EVA-CLIP** (``visual.*``, ``text.*``, ``logit_scale``): the original CLIP
  checkpoint with its vision trunk (``patch_embed``, ``blocks``, ``norm``)
  replaced. ``cls_token``, ``pos_embed`` and the projection ``visual.head``
  stay the CLIP checkpoint's: ViSFT trains without the cls token and never
  changes the position table or the head.
* **LAVIS BLIP-2** (``visual_encoder.*``): LAVIS's ``create_eva_vit_g``
  builds EVA-ViT-G with 39 of the 40 blocks and no final norm (BLIP-2 adds
  its own ``ln_vision``), so block 39 and ``norm`` are left out and **block
  39's LoRA has no effect in BLIP-2**. The cls token is required.
* **mmpretrain** ``BEiTViT`` as the ``mmpretrain::blip2/*`` configs build it
  (39 layers, ``final_norm=False``, cls token, absolute position table):
  ``blocks.i`` → ``layers.i``, ``norm1/2`` → ``ln1/2``, ``mlp.fc1/fc2`` →
  ``ffn.layers.0.0/ffn.layers.1``, ``patch_embed.proj`` →
  ``patch_embed.projection``.

LAVIS's and BEiTViT's blocks are pre-norm, so a post-norm backbone (as its
file records, else EVA-ViT-E recognised by its width) is refused for them.
All functions take and return plain state dicts; :class:`CheckpointError`
says why an input does not fit. The position table is resized with
mmpretrain's ``resize_pos_embed`` (bicubic, cls entry kept), as LAVIS resizes
it.
"""
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from mmpretrain.models.utils import resize_pos_embed

from .eva_layouts import (BLOCK_KEY, CLIP_HEAD_PREFIX, EMBED_KEYS,
                          EVA_CLIP_VISUAL_PREFIX, NORM_KEYS,
                          PATCH_EMBED_WEIGHT, infer_post_norm,
                          load_eva_checkpoint)
from .io import CheckpointError, state_dict_misfit

StateDict = Dict[str, torch.Tensor]

LAVIS_PREFIX = 'visual_encoder.'
# LAVIS create_eva_vit_g(depth=39) and the mmpretrain blip2 configs
# (num_layers=39).
BLIP2_NUM_BLOCKS = 39
# Parts of an EVA-CLIP visual tower that come from the CLIP checkpoint, not
# from ViSFT.
CLIP_KEPT = ('cls_token', 'pos_embed')
BEIT_RENAMES = (
    ('patch_embed.proj.', 'patch_embed.projection.'),
    ('.norm1.', '.ln1.'),
    ('.norm2.', '.ln2.'),
    ('.mlp.fc1.', '.ffn.layers.0.0.'),
    ('.mlp.fc2.', '.ffn.layers.1.'),
)


@dataclass
class Export:
    """An exported state dict and the notes a tool should print about it."""
    state_dict: StateDict
    notes: List[str] = field(default_factory=list)


def load_cls_token(path) -> torch.Tensor:
    """The ``cls_token`` of an EVA checkpoint (``eva_vit_g.pth``, EVA-CLIP,
    BLIP-2, ...), for targets that need one when the backbone has none."""
    state_dict = load_eva_checkpoint(path).state_dict
    if 'cls_token' not in state_dict:
        raise CheckpointError(f'{os.fspath(path)}: has no cls_token to take')
    return state_dict['cls_token']


def _num_blocks(state_dict: StateDict) -> int:
    ids = [int(m.group(1)) for m in map(BLOCK_KEY.fullmatch, state_dict) if m]
    return max(ids) + 1 if ids else 0


# ------------------------------------------------------------------ EVA-CLIP
def _clip_visual(clip_sd: StateDict, source: str) -> StateDict:
    """The ``visual.`` tensors of an original EVA-CLIP checkpoint,
    unprefixed."""
    if EVA_CLIP_VISUAL_PREFIX + PATCH_EMBED_WEIGHT not in clip_sd:
        found = ('it has the open_clip/timm layout visual.trunk.*'
                 if f'{EVA_CLIP_VISUAL_PREFIX}trunk.{PATCH_EMBED_WEIGHT}'
                 in clip_sd else
                 f'no {EVA_CLIP_VISUAL_PREFIX}{PATCH_EMBED_WEIGHT}')
        raise CheckpointError(
            f'{source}: not an original EVA-CLIP checkpoint ({found})')
    visual = {
        k[len(EVA_CLIP_VISUAL_PREFIX):]: v
        for k, v in clip_sd.items() if k.startswith(EVA_CLIP_VISUAL_PREFIX)
    }
    lacking = [
        EVA_CLIP_VISUAL_PREFIX + k for k in CLIP_KEPT if k not in visual
    ]
    if lacking:
        raise CheckpointError(
            f'{source}: the EVA-CLIP checkpoint has no {" or ".join(lacking)}')
    return visual


def export_eva_clip(backbone: StateDict,
                    clip_sd: StateDict,
                    source: str = 'the CLIP checkpoint') -> Export:
    """The EVA-CLIP checkpoint ``clip_sd`` with its vision trunk replaced by
    ``backbone``; every other tensor (cls token, position table, projection
    head, text tower, ``logit_scale``) is the CLIP checkpoint's.

    Raises:
        CheckpointError: ``clip_sd`` is not an original EVA-CLIP checkpoint,
            or the trunks differ in keys (e.g. depth) or shapes.
    """
    visual = _clip_visual(clip_sd, source)
    trunk = {k: v for k, v in backbone.items() if k not in CLIP_KEPT}
    clip_trunk = [
        k for k in visual
        if k not in CLIP_KEPT and not k.startswith(CLIP_HEAD_PREFIX)
    ]
    notes = [
        f'replaced {len(trunk)} visual trunk tensors '
        f'({_num_blocks(trunk)} blocks); cls_token, pos_embed, visual.head.*, '
        "text.* and the rest are the CLIP checkpoint's"
    ]
    if not any(k in trunk for k in NORM_KEYS) and all(k in visual
                                                      for k in NORM_KEYS):
        clip_trunk = [k for k in clip_trunk if k not in NORM_KEYS]
        notes.append(
            'norm.*: the backbone has no final LayerNorm; kept the CLIP '
            "checkpoint's")
    misfit = state_dict_misfit({k: visual[k] for k in clip_trunk}, trunk)
    if misfit:
        raise CheckpointError(
            f'the backbone ({_num_blocks(trunk)} blocks) does not fit the '
            f'visual tower of {source} ({_num_blocks(visual)} blocks): '
            f'{misfit}')
    for key in CLIP_KEPT:
        if key in backbone and not torch.equal(backbone[key].to(visual[key]),
                                               visual[key]):
            notes.append(
                f"{key}: the backbone's differs from the CLIP checkpoint's; "
                "kept the CLIP checkpoint's")

    ours_dtypes = {v.dtype for v in trunk.values()}
    clip_dtypes = {visual[k].dtype for k in trunk}
    if ours_dtypes != clip_dtypes:
        notes.append(
            f'the trunk stays {"/".join(map(str, ours_dtypes))} (the CLIP '
            f'checkpoint holds {"/".join(map(str, clip_dtypes))}); models '
            'cast it on loading')

    exported = dict(clip_sd)
    for key, value in trunk.items():
        exported[EVA_CLIP_VISUAL_PREFIX + key] = value
    return Export(exported, notes)


# ------------------------------------------------------------ BLIP-2 targets
def _check_pre_norm(backbone: StateDict, post_norm: Optional[bool],
                    target: str) -> None:
    """Refuse post-norm blocks (as ``post_norm`` says, or if None, as far as
    the width tells) for a target whose blocks are pre-norm."""
    if post_norm is None:
        post_norm = infer_post_norm(backbone)
        kind = (f'a {backbone[PATCH_EMBED_WEIGHT].shape[0]}-wide backbone is '
                'EVA-ViT-E, whose blocks are post-norm')
    else:
        kind = 'the backbone file records post-norm blocks'
    if post_norm:
        raise CheckpointError(
            f'{kind}; {target} blocks are pre-norm and would compute other '
            'features')


def _truncated_with_cls(backbone: StateDict, num_blocks: int,
                        cls_token: Optional[torch.Tensor], target: str,
                        post_norm: Optional[bool]) -> Export:
    """Blocks ``0..num_blocks-1`` with the embeddings and a cls token, no
    final norm: the vision tower BLIP-2 runs, in EVAViT's key names."""
    _check_pre_norm(backbone, post_norm, target)
    depth = _num_blocks(backbone)
    if not 0 < num_blocks <= depth:
        raise CheckpointError(
            f'cannot export {num_blocks} blocks for {target}: the backbone '
            f'has {depth}')
    notes = []
    if cls_token is None:
        cls_token = backbone.get('cls_token')
        if cls_token is None:
            raise CheckpointError(
                f'{target} needs a cls token and the backbone has none '
                '(ViSFT trains without it): give the base checkpoint it came '
                'from (eva_vit_g.pth, EVA-CLIP or BLIP-2) as --cls-token-from')
    elif 'cls_token' in backbone and not torch.equal(
            backbone['cls_token'].to(cls_token), cls_token):
        notes.append(
            "cls_token: the backbone's differs from --cls-token-from; used "
            'the latter')
    width = backbone[PATCH_EMBED_WEIGHT].shape[0]
    if tuple(cls_token.shape) != (1, 1, width):
        raise CheckpointError(
            f'the cls token has shape {tuple(cls_token.shape)}; the backbone '
            f'needs (1, 1, {width})')

    exported = {'cls_token': cls_token, **{k: backbone[k] for k in EMBED_KEYS}}
    for key, value in backbone.items():
        match = BLOCK_KEY.fullmatch(key)
        if match and int(match.group(1)) < num_blocks:
            exported[key] = value
    if num_blocks < depth:
        dropped = (f'blocks {num_blocks}..{depth - 1}' if depth -
                   num_blocks > 1 else f'block {num_blocks}')
        notes.append(
            f'{dropped} and norm.* left out: {target} runs blocks '
            f'0..{num_blocks - 1} and no final norm, so LoRA merged into '
            f'{dropped} has no effect there')
    else:
        notes.append('norm.* left out: there is no final norm in this layout')
    return Export(exported, notes)


def export_lavis(backbone: StateDict,
                 num_blocks: int = BLIP2_NUM_BLOCKS,
                 cls_token: Optional[torch.Tensor] = None,
                 img_size: Optional[int] = None,
                 post_norm: Optional[bool] = None) -> Export:
    """``visual_encoder.*`` keys of a LAVIS BLIP-2 model: blocks
    ``0..num_blocks-1``, no final norm, the cls token (``cls_token`` if
    given, else the backbone's).

    LAVIS resizes the position table only when it builds the model from
    ``eva_vit_g.pth``; a checkpoint loaded afterwards must already fit. With
    ``img_size`` (e.g. 364 for BLIP-2's captioning and VQA models) the table is
    resized here, the way LAVIS does (bicubic, no antialias, cls entry kept).
    ``post_norm`` is what the backbone file records (None: not recorded).

    Raises:
        CheckpointError: no cls token, too few blocks, or post-norm blocks.
    """
    export = _truncated_with_cls(backbone, num_blocks, cls_token,
                                 'LAVIS BLIP-2', post_norm)
    state_dict, notes = export.state_dict, export.notes
    if img_size is not None:
        patch_size = state_dict[PATCH_EMBED_WEIGHT].shape[-1]
        grid, table = img_size // patch_size, state_dict['pos_embed']
        old_grid = math.isqrt(table.shape[1] - 1)
        if grid != old_grid:
            state_dict['pos_embed'] = resize_pos_embed(table,
                                                       (old_grid, old_grid),
                                                       (grid, grid))
            notes.append(f'pos_embed resized from {old_grid}x{old_grid} to '
                         f'{grid}x{grid} patches for {img_size}-pixel inputs')
    return Export({LAVIS_PREFIX + k: v for k, v in state_dict.items()}, notes)


def to_beit_key(key: str) -> str:
    """EVAViT key → mmpretrain ``BEiTViT`` key (``blocks.0.mlp.fc1.weight`` →
    ``layers.0.ffn.layers.0.0.weight``)."""
    if key.startswith('blocks.'):
        key = 'layers.' + key[len('blocks.'):]
    for old, new in BEIT_RENAMES:
        key = key.replace(old, new)
    return key


def export_mmpretrain_beit(backbone: StateDict,
                           num_layers: int = BLIP2_NUM_BLOCKS,
                           cls_token: Optional[torch.Tensor] = None,
                           post_norm: Optional[bool] = None) -> Export:
    """``BEiTViT`` keys for ``num_layers`` layers, as the ``mmpretrain::blip2``
    configs build it (``final_norm=False``, ``with_cls_token=True``,
    ``use_abs_pos_emb=True``, no layer scale or relative position bias).
    ``post_norm`` is what the backbone file records (None: not recorded).

    Raises:
        CheckpointError: no cls token, too few blocks, or post-norm blocks.
    """
    export = _truncated_with_cls(backbone, num_layers, cls_token,
                                 'mmpretrain BLIP-2 BEiTViT', post_norm)
    export.notes.append(
        'the blip2-opt configs set out_indices=-2 and read the output of '
        f'layer {num_layers - 2}, so layer {num_layers - 1} has no effect '
        'there either')
    return Export({
        to_beit_key(k): v
        for k, v in export.state_dict.items()
    }, export.notes)
