"""Evaluate a multimodal model with another vision backbone's weights.

mmpretrain has no option to swap the vision backbone of a BLIP-2 checkpoint:
an ``init_cfg`` on ``vision_backbone`` runs before mmengine's Runner loads
``load_from``, which then overwrites it. This hook loads the file named by the
config's top-level ``backbone_checkpoint`` at ``before_test``, i.e. after the
full checkpoint, strictly, so a ViSFT backbone replaces exactly the vision
weights and every other weight stays as in ``load_from``.
"""
from typing import Dict

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from visft_mm.checkpoints.io import (CheckpointError, load_model_state_dict,
                                     module_misfit)
from visft_mm.registry import HOOKS

# BEiTViT resizes a position embedding of another grid size while loading.
RESIZED_ON_LOAD = ('pos_embed', )


def _fits(key: str, given: torch.Size, expected: torch.Size) -> bool:
    if key in RESIZED_ON_LOAD:
        return len(given) == len(expected) and given[-1] == expected[-1]
    return given == expected


def load_module_weights(module: nn.Module, state_dict: Dict[str, torch.Tensor],
                        source: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; on a mismatch raise a
    :class:`CheckpointError` that lists missing, unexpected and misshapen
    keys."""
    misfit = module_misfit(module, state_dict, shape_fits=_fits)
    if misfit:
        raise CheckpointError(
            f'{source} does not fit the {type(module).__name__} it should '
            f'replace: {misfit}. The file must hold that module\'s own state '
            'dict (mmpretrain BEiTViT keys such as layers.0.attn.qkv.weight, '
            'without a vision_backbone. prefix).')
    module.load_state_dict(state_dict, strict=True)


@HOOKS.register_module()
class BackboneCheckpointHook(Hook):
    """Before testing, load the config's ``backbone_checkpoint`` into the
    model's
    ``module`` (``'vision_backbone'``); does nothing while it is None.

    The path is read from the config at run time, so
    ``--cfg-options backbone_checkpoint=PATH`` selects it.
    """

    # before any other before_test hook looks at the model
    priority = 'VERY_HIGH'

    def __init__(self, module: str = 'vision_backbone') -> None:
        self.module = module

    def before_test(self, runner) -> None:
        path = runner.cfg.get('backbone_checkpoint')
        if path is None:
            runner.logger.info(
                f'backbone_checkpoint is None: testing the {self.module} '
                f'weights of {runner.cfg.get("load_from")}')
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        target = model.get_submodule(self.module)
        load_module_weights(target, load_model_state_dict(path), str(path))
        runner.logger.info(
            f'{self.module}: loaded all {len(target.state_dict())} tensors of '
            f'{path} over those of {runner.cfg.get("load_from")}')
