"""mmdet's sigmoid focal loss on any device.

mmdet's ``FocalLoss`` calls mmcv's compiled ``sigmoid_focal_loss`` for every
CUDA prediction given class indices, which fails with an mmcv built with CPU
ops only. ``AnyDeviceFocalLoss`` turns the indices into one-hot targets
wherever mmcv has no kernel for the device, the way mmdet itself does on the
CPU, and mmdet then computes the loss in PyTorch (``py_sigmoid_focal_loss``).
"""
from typing import Optional

import torch.nn.functional as F
from mmdet.models.losses import FocalLoss
from torch import Tensor

from visft_mm.registry import MODELS
from visft_mm.utils.mmcv_kernels import mmcv_has_accelerator_kernels_for


@MODELS.register_module()
class AnyDeviceFocalLoss(FocalLoss):
    """mmdet's ``FocalLoss`` that uses mmcv's kernel only where it exists."""

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """mmdet's forward: same arguments, same result."""
        if pred.dim() != target.dim() and not mmcv_has_accelerator_kernels_for(
                pred.device):
            num_classes = pred.size(1)
            target = F.one_hot(
                target, num_classes=num_classes + 1)[:, :num_classes]
        return super().forward(pred, target, weight, avg_factor,
                               reduction_override)
