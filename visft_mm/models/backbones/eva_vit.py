"""EVA vision transformer as ViSFT fine-tunes it (EVA-ViT-G and EVA-ViT-E).

Written here because no OpenMMLab package has this exact variant: mmpretrain's
``BEiTViT`` (arch ``'eva-g'``) has no post-norm blocks and computes ``qkv``
with ``F.linear(x, self.qkv.weight)``, which a LoRA layer cannot intercept,
and ``ViTEVA02`` has RoPE and SwiGLU. Parameter names equal the EVA-CLIP /
LAVIS checkpoints minus the ``visual.`` prefix, so loading them is a rename.

Shapes: an image (B, 3, H, W) becomes a (B, h*w, C) token sequence, with
h = H // 14 and w = W // 14; outputs are (B, C, h, w) feature maps.
"""
import logging
import math
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from visft_mm.checkpoints.eva_layouts import load_eva_weights
from visft_mm.checkpoints.io import CheckpointError
from visft_mm.registry import MODELS

ArchSpec = Dict[str, Union[int, bool]]
EVA_CHECKPOINT_SOURCE = (
    'base weights: LAVIS eva_vit_g.pth (EVA-ViT-G, '
    'https://storage.googleapis.com/'
    'sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth) or '
    'EVA02_CLIP_E_psz14_plus_s9B.pt (EVA-ViT-E, EVA-CLIP model zoo, '
    'https://github.com/baaivision/EVA/tree/master/EVA-CLIP); '
    'ViSFT weights: merge a '
    'LoRA file into them with tools/model_converters/merge_lora.py')


def resize_pos_table(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A square (1, g*g, C) table of patch positions resized to (1, h*w, C):
    bicubic, ``align_corners=False``, no antialias, as LAVIS and EVA-CLIP
    do."""
    grid_size = math.isqrt(table.shape[1])
    grid = table.reshape(1, grid_size, grid_size, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=(h, w), mode='bicubic', align_corners=False)
    return grid.to(table.dtype).flatten(2).transpose(1, 2)


class EVAAttention(nn.Module):
    """Multi-head self-attention with a fused bias-free ``qkv`` projection plus
    separate ``q_bias`` and ``v_bias`` (the key bias is fixed at zero), run by
    ``scaled_dot_product_attention`` (flash / memory-efficient kernels)."""

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dims))
        self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv_bias = torch.cat(
            [self.q_bias,
             torch.zeros_like(self.v_bias), self.v_bias])
        qkv = self.qkv(
            x)  # (B, N, 3C); a LoRA layer may stand in for the Linear
        qkv += qkv_bias
        q, k, v = qkv.view(B, N, 3, self.num_heads,
                           C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k,
                                           v)  # (B, heads, N, C // heads)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class EVAMlp(nn.Module):
    """Two-layer GELU MLP (``fc1``, ``fc2``)."""

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, feedforward_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(feedforward_channels, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EVABlock(nn.Module):
    """Transformer block; ``post_norm`` selects EVA-ViT-E's
    ``x + norm(attn(x))`` over the usual pre-norm ``x + attn(norm(x))``."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 post_norm: bool,
                 norm_eps: float = 1e-6):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.attn = EVAAttention(embed_dims, num_heads)
        self.norm2 = nn.LayerNorm(embed_dims, eps=norm_eps)
        self.mlp = EVAMlp(embed_dims, feedforward_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.norm1(self.attn(x))
            return x + self.norm2(self.mlp(x))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@MODELS.register_module()
class EVAViT(BaseModule):
    """EVA vision transformer (EVA-ViT-G, EVA-ViT-E) as a dense backbone.

    The code names the two models by their ``arch`` key; every other name of
    them means the same model:

    =========  =========  =======================  ===========================
    ``arch``   paper      EVA-CLIP model           config prefixes
    =========  =========  =======================  ===========================
    ``eva-g``  EVA-ViT-G  EVA01-CLIP-g/14          ``eva_1b_``, ``evaclip_g_``
    ``eva-e``  EVA-ViT-E  EVA02-CLIP-bigE-14-plus  ``eva_4b_``, ``evaclip_e_``
    =========  =========  =======================  ===========================

    - Checkpoints: ViSFT trains ``eva-g`` from LAVIS's ``eva_vit_g.pth``
      (BLIP-2's vision encoder; BLIP-2 and mmpretrain's ``BEiTViT`` arch
      ``'eva-g'`` run its first 39 blocks) and ``eva-e`` from the visual
      tower of ``EVA02_CLIP_E_psz14_plus_s9B.pt``. The EVA-CLIP benchmarks load
      ``EVA01_CLIP_g_14_psz14_s11B.pt`` (open_clip ``EVA01-g-14``) and
      ``EVA02_CLIP_E_psz14_plus_s9B.pt`` (open_clip ``EVA02-E-14-plus``). The
      official ViSFT heads and LoRA files are ``eva_g_*`` and ``eva_e_*``.
    - Configs: ``eva_1b_*`` / ``eva_4b_*`` (1.0B / 4.4B parameters) train
      ViSFT and probe the backbone; ``evaclip_g_*`` / ``evaclip_e_*`` run the
      EVA-CLIP benchmarks; ``_base_/models/eva_vit_{g,e}.py`` hold the
      backbones.

    Args:
        arch: ``'eva-g'`` (40 blocks, 1408 wide, pre-norm), ``'eva-e'``
            (64 blocks, 1792 wide, post-norm) or a dict with mmpretrain's keys
            ``embed_dims``, ``num_layers``, ``num_heads``,
            ``feedforward_channels`` and optionally ``post_norm`` (False).
        patch_size: Patch (and output stride) size.
        pretrain_img_size: Image size of the position table (224 → 16×16 grid);
            other input sizes get the table resized bicubically, as LAVIS does.
        with_cls_token: Run a cls token through the blocks (EVA-CLIP does;
            ViSFT trains without it). The position table keeps its cls entry
            either way, so checkpoints load in both settings.
        out_indices: Blocks whose outputs are returned (negative counts from
            the end). The final LayerNorm applies to the last block's output.
        out_type: ``'featmap'`` (B, C, h, w), ``'raw'`` (B, [1 +] h*w, C) or
            ``'cls_token'`` (B, C; needs ``with_cls_token``).
        final_norm: Whether the model has the final LayerNorm ``norm``.
        with_cp: Gradient checkpointing per block whenever the forward builds
            a graph (train or eval mode: a ``FrozenBackbone`` with LoRA trains
            in eval mode); non-reentrant, so it needs no grad-requiring input.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads any
            layout :func:`convert_eva_state_dict` accepts, reporting every
            missing or unexpected key.
    """

    arch_zoo: Dict[str, ArchSpec] = {
        'eva-g':
        dict(
            embed_dims=1408,
            num_layers=40,
            num_heads=16,
            feedforward_channels=6144,
            post_norm=False),
        'eva-e':
        dict(
            embed_dims=1792,
            num_layers=64,
            num_heads=16,
            feedforward_channels=15360,
            post_norm=True),
    }
    OUT_TYPES = ('featmap', 'raw', 'cls_token')

    def __init__(self,
                 arch: Union[str, ArchSpec] = 'eva-g',
                 patch_size: int = 14,
                 pretrain_img_size: int = 224,
                 in_channels: int = 3,
                 with_cls_token: bool = False,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 final_norm: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        C = self.arch_settings['embed_dims']
        num_layers = self.arch_settings['num_layers']
        self.embed_dims = C
        self.num_layers = num_layers
        self.patch_size = patch_size
        self.pos_grid = pretrain_img_size // patch_size
        self.with_cls_token = with_cls_token
        if out_type not in self.OUT_TYPES:
            raise ValueError(
                f'out_type must be one of {self.OUT_TYPES}, got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        self.out_type = out_type
        self.out_indices = self._parse_out_indices(out_indices, num_layers)
        self.with_cp = with_cp

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(
            in_channels, C, patch_size, stride=patch_size)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.pos_grid**2, C))
        self.blocks = nn.ModuleList(
            EVABlock(C, self.arch_settings['num_heads'],
                     self.arch_settings['feedforward_channels'],
                     bool(self.arch_settings.get('post_norm', False)))
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(C, eps=1e-6) if final_norm else nn.Identity()
        self._pos_cache: Dict[tuple, torch.Tensor] = {}
        self._warned_uneven_input = False

    # ------------------------------------------------------------------ setup
    @classmethod
    def _parse_arch(cls, arch: Union[str, ArchSpec]) -> ArchSpec:
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise KeyError(f'Unknown EVAViT arch {arch!r}; choose from '
                               f'{sorted(cls.arch_zoo)} or pass a dict')
            return dict(cls.arch_zoo[arch])
        required = {
            'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'
        }
        missing = required - set(arch)
        if missing:
            raise KeyError(f'Custom EVAViT arch lacks {sorted(missing)}')
        unknown = set(arch) - required - {'post_norm'}
        if unknown:
            raise KeyError(
                f'Custom EVAViT arch has unknown keys {sorted(unknown)}')
        return dict(arch)

    @staticmethod
    def _parse_out_indices(out_indices, num_layers) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            real = ((index % num_layers)
                    if -num_layers <= index < num_layers else None)
            if real is None:
                raise IndexError(f'out_indices {index} is out of range for '
                                 f'{num_layers} blocks')
            parsed.append(real)
        return tuple(sorted(set(parsed)))

    def init_weights(self):
        """Load ``init_cfg`` Pretrained weights with a key report, or
        initialise as EVA does (truncated normal, std 0.02)."""
        if self.init_cfg and self.init_cfg.get('type') == 'Pretrained':
            checkpoint = self.init_cfg['checkpoint']
            if not os.path.isfile(checkpoint):
                raise CheckpointError(
                    f'{checkpoint}: EVA checkpoint file not found; '
                    f'{EVA_CHECKPOINT_SOURCE}')
            load_eva_weights(self, checkpoint)
            self._is_init = True
            return
        super().init_weights()
        if self.init_cfg is None:
            trunc_normal_(self.pos_embed, std=0.02)
            if self.with_cls_token:
                trunc_normal_(self.cls_token, std=0.02)
            for m in self.blocks.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- forward
    def resized_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Patch part of the position table for an h×w grid, (1, h*w, C).

        Bicubic, ``align_corners=False``, no antialias (LAVIS ``get_abs_pos``).
        Results are cached per size while the table cannot receive gradients.
        """
        table = self.pos_embed[:, 1:]
        if (h, w) == (self.pos_grid, self.pos_grid):
            return table
        cacheable = not (torch.is_grad_enabled()
                         and self.pos_embed.requires_grad)
        key = (h, w, self.pos_embed._version, self.pos_embed.device,
               self.pos_embed.dtype)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        resized = resize_pos_table(table, h, w)
        if cacheable:
            self._pos_cache = {key: resized}  # keep only the latest size
        return resized

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._warn_uneven_input(*x.shape[-2:])
        x = self.patch_embed.proj(x)  # (B, C, h, w)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self.resized_pos_embed(
            h, w)  # (B, h*w, C)
        num_prefix = 0
        if self.with_cls_token:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1)
            x = torch.cat([cls, x], dim=1)
            num_prefix = 1

        outs = []
        checkpoint = self.with_cp and self._builds_graph(x)
        for i, block in enumerate(self.blocks):
            if checkpoint:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i == self.num_layers - 1:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, num_prefix, h, w))
        return tuple(outs)

    def _warn_uneven_input(self, height: int, width: int) -> None:
        """Warn once if the patch convolution drops edge pixels of the input
        (a height or width that is not a multiple of the patch size)."""
        dropped_rows = height % self.patch_size
        dropped_cols = width % self.patch_size
        if self._warned_uneven_input or not (dropped_rows or dropped_cols):
            return
        self._warned_uneven_input = True
        print_log(
            f'EVAViT: a {height}x{width} input is not a multiple of the patch '
            f'size {self.patch_size}, so its last {dropped_rows} rows and '
            f'{dropped_cols} columns of pixels are dropped; pad inputs with '
            f'pad_size_divisor={self.patch_size} in the data preprocessor '
            '(warned once)',
            logger='current',
            level=logging.WARNING)

    def _builds_graph(self, x: torch.Tensor) -> bool:
        """Whether this forward records a graph for backward: checkpointing
        depends on that, not on train mode, because a frozen backbone stays
        in eval mode while LoRA layers inside it train."""
        return torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for p in self.blocks.parameters()))

    def _format_output(self, x: torch.Tensor, num_prefix: int, h: int,
                       w: int) -> torch.Tensor:
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        B, _, C = x.shape
        return x[:, num_prefix:].transpose(1, 2).reshape(B, C, h, w)
