"""Layers: mmcv's and mmdet's, adapted to run on any device."""
from .deformable_attention import (AnyDeviceMSDeformAttnPixelDecoder,
                                   AnyDeviceMultiScaleDeformableAttention,
                                   use_any_device_deformable_attention)

__all__ = [
    'AnyDeviceMSDeformAttnPixelDecoder',
    'AnyDeviceMultiScaleDeformableAttention',
    'use_any_device_deformable_attention'
]
