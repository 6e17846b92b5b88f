"""A tiny EVA-CLIP (vision tower, text tower, checkpoint in the original
layout) for the tests of the benchmarks and of checkpoint loading."""
import numpy as np
import torch
from open_clip import get_model_config
from open_clip.model import _build_text_tower

from visft_mm.benchmarks import EVACLIP
from visft_mm.models import EVAViT

TINY_TEXT = dict(width=32, heads=2, layers=1)
EMBED_DIM = 16


def tiny_arch(size: str) -> dict:
    """EVA-ViT-G is pre-norm, EVA-ViT-E post-norm."""
    return dict(
        embed_dims=32,
        num_layers=2,
        num_heads=2,
        feedforward_channels=64,
        post_norm=size == 'e')


def tiny_clip_state_dict(size: str, seed: int = 0) -> dict:
    """A tiny EVA-CLIP checkpoint in the original layout: our EVAViT's keys
    under ``visual.`` plus ``visual.head``, open_clip's text tower under
    ``text.``, and ``logit_scale``."""
    torch.manual_seed(seed)
    vision = EVAViT(arch=tiny_arch(size), with_cls_token=True)
    vision.init_weights()
    for name, param in vision.named_parameters(
    ):  # LayerNorms away from their defaults
        if 'norm' in name:
            param.data += torch.randn_like(param) * 0.3
    text = _build_text_tower(EMBED_DIM, {
        **get_model_config('EVA01-g-14')['text_cfg'],
        **TINY_TEXT
    })
    state = {f'visual.{k}': v for k, v in vision.state_dict().items()}
    state['visual.head.weight'] = torch.randn(EMBED_DIM,
                                              vision.embed_dims) * 0.1
    state['visual.head.bias'] = torch.zeros(EMBED_DIM)
    state.update({f'text.{k}': v for k, v in text.state_dict().items()})
    state['logit_scale'] = torch.tensor(np.log(100.0), dtype=torch.float32)
    return state


def tiny_clip(size: str, **kwargs) -> EVACLIP:
    return EVACLIP(
        vision_arch=tiny_arch(size),
        embed_dim=EMBED_DIM,
        text_cfg=TINY_TEXT,
        open_clip_model='EVA01-g-14' if size == 'g' else 'EVA02-E-14-plus',
        **kwargs)
