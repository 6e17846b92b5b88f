"""mmdet's DINO whose deformable attention runs on any device.

DINO builds mmcv's ``MultiScaleDeformableAttention`` in its encoder
(self-attention) and decoder (cross-attention), which calls a compiled CUDA
kernel for every CUDA tensor. This subclass switches those modules to
``AnyDeviceMultiScaleDeformableAttention`` (see
visft_mm/models/layers/deformable_attention.py), so DINO also trains and
predicts on a GPU with an mmcv built with CPU ops only. Arguments and state
dict are mmdet's.
"""
from mmdet.models.detectors import DINO

from visft_mm.registry import MODELS
from ..layers import use_any_device_deformable_attention


@MODELS.register_module()
class AnyDeviceDINO(DINO):
    """mmdet's ``DINO`` with ``AnyDeviceMultiScaleDeformableAttention``."""

    def _init_layers(self) -> None:
        super()._init_layers()
        use_any_device_deformable_attention(self)
