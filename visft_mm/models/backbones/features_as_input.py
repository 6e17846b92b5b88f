"""Identity backbone through which a whole OpenMMLab model becomes a task head.

ViSFT runs one shared ViT and feeds its features to several task models
(an mmdet DETR, an mmdet Mask2Former, a caption model). Those models reach
their input only through ``extract_feat`` → ``self.backbone(inputs)``, so with
this backbone their ``loss``/``predict`` accept the shared features in place
of images and everything after the backbone is reused unchanged.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from visft_mm.registry import MODELS


@MODELS.register_module()
class FeaturesAsInput(nn.Module):
    """Returns the (already computed) feature maps it is given."""

    def forward(self,
                feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if isinstance(feats, torch.Tensor):
            raise TypeError(
                'FeaturesAsInput expects the shared backbone features '
                '(a tuple of maps), got one tensor: '
                'was the task model called on images?')
        return tuple(feats)

    def init_weights(self) -> None:
        """Nothing to initialise."""
