"""LoRA for fused projections, and a wrapper that injects it into a backbone.

Written here because mmpretrain's ``LoRAModel`` cannot serve ViSFT: its
``LoRALinear`` has no ``.weight`` (EVA attention reads ``qkv.weight``), it
adapts the whole fused ``qkv`` output rather than the q and v slices, and its
state-dict hooks drop every non-LoRA key of the *whole* model, not only of the
wrapped module. Here freezing is ``FrozenBackbone``'s alone: LoRA layers
injected into a frozen backbone are its only trainable, hence saved, tensors.
The tensor layout is loralib's ``MergedLinear`` (what the
official ViSFT LoRA files hold; see :mod:`visft_mm.checkpoints.lora_files`).
"""
import math
import re
from typing import Dict, Iterable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

from visft_mm.checkpoints.io import state_dict_misfit
from visft_mm.checkpoints.lora_files import (fused_lora_delta, is_lora_key,
                                             parse_slices)
from visft_mm.registry import MODELS
from ..backbones.frozen_backbone import FrozenBackbone


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` with a low-rank update on some output slices.

    It shares ``weight`` and ``bias`` with the layer it replaces, so those keep
    their names (``qkv.weight``) and the update adds ``lora_A``/``lora_B``.
    ``merge()`` folds the update into ``weight``; a merged layer never adds it
    again, whatever its train/eval mode.
    """

    def __init__(self,
                 base: nn.Linear,
                 rank: int = 64,
                 alpha: float = 1.,
                 drop_rate: float = 0.,
                 slices: Union[None, str, Sequence[bool]] = None):
        nn.Module.__init__(self)
        if rank <= 0:
            raise ValueError(f'LoRA rank must be positive, got {rank}')
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.weight = base.weight
        self.register_parameter('bias', base.bias)
        self.slices = parse_slices(slices)
        num_slices = len(self.slices) if self.slices else 1
        if self.out_features % num_slices:
            raise ValueError(
                f'slices {self.slices} need out_features in {num_slices} '
                f'equal slices, but out_features is {self.out_features}')
        self.slice_width = self.out_features // num_slices
        self.adapted = [
            i for i, on in enumerate(self.slices or (True, )) if on
        ]
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        n = len(self.adapted)
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(
            torch.empty(n * rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(
            torch.zeros(n * self.slice_width, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(
            drop_rate) if drop_rate > 0 else nn.Identity()
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f'{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}, '
            f'slices={self.slices}, merged={self.merged}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            if self.training and torch.is_grad_enabled(
            ) and self.lora_A.requires_grad:
                raise RuntimeError(
                    'LoRALinear is merged: unmerge() it before training LoRA')
            return out
        # 2-D views let both GEMMs read and write strided slices in place: no
        # copies of the slices, and the scaling rides on addmm's alpha. The
        # in-place addmm_ is outside autocast's reach, so its operands are cast
        # to the output's dtype by hand (bf16/fp16 under autocast, else the
        # base layer's); out of autocast, x meets lora_A in LoRA's own dtype.
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_A.dtype)
        hidden = F.linear(
            self.lora_dropout(x).reshape(-1, self.in_features),
            self.lora_A).to(out.dtype)  # (M, n*r)
        lora_B = self.lora_B.to(out.dtype)
        out_2d = out.view(-1, self.out_features)
        r, d = self.rank, self.slice_width
        for j, s in enumerate(self.adapted):
            out_2d[:, s * d:(s + 1) * d].addmm_(
                hidden[:, j * r:(j + 1) * r],
                lora_B[j * d:(j + 1) * d].t(),
                alpha=self.scaling)
        return out

    def delta_weight(self) -> torch.Tensor:
        return fused_lora_delta(self.lora_A, self.lora_B, self.slices,
                                self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False


@MODELS.register_module()
class LoRAModel(BaseModule):
    """Inject LoRA into the layers of ``module`` whose names match ``targets``.

    ``module`` is usually a :class:`FrozenBackbone`: its frozen weights stay
    out of gradients and checkpoints while the LoRA layers train and are
    saved. Layers are named as in the network LoRA adapts (the frozen
    backbone's ``module``), as LoRA files name them (``blocks.0.attn.qkv``).

    Arguments follow mmpretrain's ``LoRAModel`` so its configs carry over; a
    target matches a module name by ``re.fullmatch`` or suffix, and may set its
    own ``rank``, ``alpha``, ``drop_rate`` and ``slices``. Defaults are
    ViSFT's: rank 64, alpha 1, q and v slices of every attention ``qkv``.

    Args:
        module: The model (or its config) to adapt.
        targets: Layer selectors, e.g. ``[dict(type='qkv', slices='qv')]``.
            Slices need a layer whose output splits into that many equal
            parts (``'qv'``: a fused qkv projection).
    """

    def __init__(self,
                 module: Union[dict, nn.Module],
                 targets: Iterable[dict] = (dict(type='qkv', slices='qv'), ),
                 rank: int = 64,
                 alpha: float = 1.,
                 drop_rate: float = 0.,
                 slices: Union[None, str, Sequence[bool]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.module = MODELS.build(module) if isinstance(module,
                                                         dict) else module
        self.defaults = dict(
            rank=rank, alpha=alpha, drop_rate=drop_rate, slices=slices)
        self.targets = [dict(t) for t in targets]
        self.lora_layers: Dict[str, LoRALinear] = {}
        self._inject()
        print_log(
            f'LoRAModel: LoRA on {len(self.lora_layers)} layers of '
            f'{type(self.network).__name__}: {", ".join(self.lora_layers)}',
            logger='current')

    @property
    def network(self) -> nn.Module:
        """The network LoRA adapts: the frozen backbone's module, or
        ``module`` itself."""
        if isinstance(self.module, FrozenBackbone):
            return self.module.module
        return self.module

    @property
    def network_prefix(self) -> str:
        """Where the network's keys sit in this module's state dict
        (``'module.module.'`` inside a frozen backbone)."""
        nested = isinstance(self.module, FrozenBackbone)
        return 'module.module.' if nested else 'module.'

    def _match(self, name: str) -> Optional[dict]:
        for target in self.targets:
            pattern = target['type']
            if re.fullmatch(pattern, name) or name.endswith(pattern):
                return target
        return None

    def _inject(self) -> None:
        for name, layer in list(self.network.named_modules()):
            target = self._match(name)
            if target is None:
                continue
            if not isinstance(layer, nn.Linear) or isinstance(
                    layer, LoRALinear):
                raise TypeError(
                    f'LoRA target {name!r} is a {type(layer).__name__}, '
                    'not an nn.Linear')
            kwargs = {
                **self.defaults,
                **{
                    k: v
                    for k, v in target.items() if k != 'type'
                }
            }
            try:
                lora = LoRALinear(layer, **kwargs)
            except ValueError as e:
                raise ValueError(f'LoRA target {name!r}: {e}') from e
            parent_name, _, attr = name.rpartition('.')
            setattr(self.network.get_submodule(parent_name), attr, lora)
            self.lora_layers[name] = lora
        if not self.lora_layers:
            raise ValueError(
                f'No layer of {type(self.network).__name__} matches the LoRA '
                f'targets {[t["type"] for t in self.targets]}')

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen inner module may pin itself to eval; LoRA layers follow
        # `mode`.
        for layer in self.lora_layers.values():
            layer.train(mode)
        return self

    # ----------------------------------------------------------- merge / io
    def merge(self) -> None:
        for layer in self.lora_layers.values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in self.lora_layers.values():
            layer.unmerge()

    def lora_state_dict(self) -> Dict[str, torch.Tensor]:
        """LoRA tensors keyed by their names inside :attr:`network`."""
        return {
            name: p.detach().clone()
            for name, p in self.network.named_parameters() if is_lora_key(name)
        }

    def load_lora_state_dict(self, state_dict: Dict[str,
                                                    torch.Tensor]) -> None:
        """Load LoRA tensors keyed as :meth:`lora_state_dict` gives them;
        any missing or surplus key or other shape is an error."""
        own = {
            name: p
            for name, p in self.network.named_parameters() if is_lora_key(name)
        }
        misfit = state_dict_misfit(own, state_dict)
        if misfit:
            raise KeyError(f'LoRA state dict does not fit: {misfit}')
        if any(layer.merged for layer in self.lora_layers.values()):
            raise RuntimeError('unmerge() before loading LoRA weights')
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(state_dict[name])

    def lora_config(self) -> Dict[str, dict]:
        """Rank, alpha and slices of every adapted layer, keyed by layer
        name."""
        return {
            name: dict(rank=l.rank, alpha=l.alpha, slices=l.slices)
            for name, l in self.lora_layers.items()
        }
