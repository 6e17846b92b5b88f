"""Layers: mmcv's and mmdet's, adapted to run on any device or to the
released ViSFT heads."""
from .deformable_attention import (AnyDeviceMSDeformAttnPixelDecoder,
                                   AnyDeviceMultiScaleDeformableAttention,
                                   use_any_device_deformable_attention)
from .repeated_map_pixel_decoder import RepeatedMapPixelDecoder

__all__ = [
    'AnyDeviceMSDeformAttnPixelDecoder',
    'AnyDeviceMultiScaleDeformableAttention', 'RepeatedMapPixelDecoder',
    'use_any_device_deformable_attention'
]
