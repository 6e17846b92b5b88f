"""The one way visft_mm freezes a network: :class:`FrozenBackbone`.

ViSFT stage 1 (a frozen ViT under task heads), stage 2 (LoRA inside the
frozen ViT) and the probes (mmseg's ``EncoderDecoder``, mmpretrain's
``ImageClassifier`` on the frozen ViT) all wrap their ViT in it. Its frozen
tensors (1-4 B parameters) come from the ViT's ``init_cfg``, loaded when the
wrapper is built, so training, ``tools/test.py`` (which never calls
``init_weights``) and any OpenMMLab tool see the same weights, and no
checkpoint needs to hold them. Unlike mmpretrain's LoRA hooks, the state-dict
hooks act only on keys under this module's own prefix, so no other module's
weights are dropped and other missing keys still fail a strict load.
"""
from typing import List, Optional, Union

import torch.nn as nn
from mmengine.model import BaseModule

from visft_mm.registry import MODELS


@MODELS.register_module()
class FrozenBackbone(BaseModule):
    """Runs ``module`` frozen: pretrained weights loaded when built, no
    gradients, always in eval mode, and its frozen tensors kept out of
    checkpoints.

    The frozen tensors are those of ``module`` that do not require grad
    (parameters and buffers); layers added later that train, such as LoRA
    layers injected by ``LoRAModel``, are saved like any trainable weight.
    :meth:`load_state_dict` accepts a checkpoint that holds none of the frozen
    tensors; one holding only some of them is reported like any other
    incomplete file (see :func:`visft_mm.checkpoints.io.module_misfit`).

    Args:
        module: The network (or its config). It must load pretrained weights
            (``init_cfg=dict(type='Pretrained', checkpoint=...)``): nothing
            else could restore them when a checkpoint is loaded.
        random_weights: Accept a module without pretrained weights and load
            none when built; :meth:`init_weights` initialises it as the module
            does. Only for tools that time or size a model without any file:
            such a model's checkpoints cannot restore its frozen weights.
    """

    def __init__(self,
                 module: Union[dict, nn.Module],
                 random_weights: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        module_init = (module.get('init_cfg') if isinstance(module, dict) else
                       getattr(module, 'init_cfg', None)) or {}
        pretrained = module_init.get('type') == 'Pretrained' and bool(
            module_init.get('checkpoint'))
        if not (pretrained or random_weights):
            raise ValueError(
                'FrozenBackbone needs a module with init_cfg=dict(type='
                "'Pretrained', checkpoint=...), "
                f'got init_cfg={module_init or None}: '
                'its weights are never saved, so they must be reloadable')
        self.module = MODELS.build(module) if isinstance(module,
                                                         dict) else module
        self.random_weights = random_weights
        if not random_weights and not getattr(self.module, '_is_init', False):
            self.module.init_weights()
        self.module.requires_grad_(False)
        self._load_prefix: Optional[str] = None
        self._register_state_dict_hook(FrozenBackbone._drop_frozen)
        self._register_load_state_dict_pre_hook(
            FrozenBackbone._note_load, with_module=True)
        self.register_load_state_dict_post_hook(FrozenBackbone._accept_absent)

    def init_weights(self) -> None:
        """Nothing more to do: the weights were loaded when the module was
        built (``random_weights``: the module initialises itself)."""
        if self.random_weights and not getattr(self.module, '_is_init', False):
            self.module.init_weights()
        self._is_init = True

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.eval()  # dropout and norm statistics stay as pretrained
        return self

    def excluded_state_keys(self) -> List[str]:
        """Keys (relative to this module) of the frozen tensors, which
        checkpoints leave out."""
        return [
            f'module.{name}'
            for name, tensor in self.module.state_dict(keep_vars=True).items()
            if not tensor.requires_grad
        ]

    # State-dict hooks reach the module through their argument, so copies of
    # the module stay correct.
    @staticmethod
    def _drop_frozen(module, state_dict, prefix, local_metadata):
        for key in module.excluded_state_keys():
            state_dict.pop(prefix + key, None)

    @staticmethod
    def _note_load(module, state_dict, prefix, local_metadata, strict,
                   missing_keys, unexpected_keys, error_msgs):
        frozen = module.excluded_state_keys()
        holds_none = not any(prefix + key in state_dict for key in frozen)
        module._load_prefix = prefix if holds_none else None

    @staticmethod
    def _accept_absent(module, incompatible_keys):
        prefix, module._load_prefix = module._load_prefix, None
        if prefix is None:
            return
        absent = {prefix + key for key in module.excluded_state_keys()}
        incompatible_keys.missing_keys[:] = [
            k for k in incompatible_keys.missing_keys if k not in absent
        ]
