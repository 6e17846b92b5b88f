"""A frozen backbone whose weights always come from its own ``init_cfg``.

Probes (a light head on a frozen ViT) live in mmseg's ``EncoderDecoder`` and
mmpretrain's ``ImageClassifier``, which would write the whole 1-4 B parameter
ViT into every checkpoint. Wrapped in :class:`FrozenBackbone`, checkpoints hold
only the head, as visft_mm's ViSFT and LoRA models do
(``ExcludeFromCheckpoint``), and ``tools/test.py`` reloads the ViT from the
config's checkpoint.
"""
from typing import List, Optional

from mmengine.model import BaseModule

from visft_mm.registry import MODELS
from ..checkpoint_exclusion import ExcludeFromCheckpoint


@MODELS.register_module()
class FrozenBackbone(ExcludeFromCheckpoint, BaseModule):
    """Runs ``module`` without gradients, always in eval mode, and keeps its
    weights out of checkpoints.

    Args:
        module: Config of the backbone. It must load pretrained weights
            (``init_cfg=dict(type='Pretrained', checkpoint=...)``): nothing
            else could restore them when a checkpoint is loaded.
    """

    def __init__(self, module: dict, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        module_init = module.get('init_cfg') or {}
        if module_init.get(
                'type') != 'Pretrained' or not module_init.get('checkpoint'):
            raise ValueError(
                'FrozenBackbone needs a module with init_cfg=dict(type='
                "'Pretrained', checkpoint=...), "
                f'got init_cfg={module_init or None}: '
                'its weights are never saved, so they must be reloadable')
        self.module = MODELS.build(module)
        self.module.requires_grad_(False)
        self.register_checkpoint_exclusion()

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.eval()  # dropout and norm statistics stay as pretrained
        return self

    def init_excluded_weights(self) -> None:
        if not getattr(self.module, '_is_init', False):
            self.module.init_weights()

    def excluded_state_keys(self) -> List[str]:
        """Every tensor of ``module``."""
        return [f'module.{name}' for name in self.module.state_dict()]
