"""Models of visft_mm: the EVA vision transformer, its LoRA, the task heads
and the mmdet modules they need on GPUs without compiled mmcv kernels
(EVA-CLIP, for the out-of-domain benchmarks, is in
:mod:`visft_mm.benchmarks`)."""
# The visft_mm scope resolves mmdet models without prefix; importing registers
# them.
import mmdet.models  # noqa: F401

from .backbones import EVAViT, FeaturesAsInput, FrozenBackbone
from .captioner import ImageCaptioner
from .data_preprocessors import PadThenNormalizeDetDataPreprocessor
from .detectors import AnyDeviceDINO, UniTDETR, UniTDETRHead
from .heads import ShiftedLabelMask2FormerHead, ShowAttendTellHead
from .layers import (AnyDeviceMSDeformAttnPixelDecoder,
                     AnyDeviceMultiScaleDeformableAttention,
                     RepeatedMapPixelDecoder)
from .losses import AnyDeviceFocalLoss
from .peft import LoRALinear, LoRAModel
from .visft import MultiTaskDataPreprocessor, ViSFT

__all__ = [
    'AnyDeviceDINO', 'AnyDeviceFocalLoss', 'AnyDeviceMSDeformAttnPixelDecoder',
    'AnyDeviceMultiScaleDeformableAttention', 'EVAViT', 'FeaturesAsInput',
    'FrozenBackbone', 'ImageCaptioner', 'LoRALinear', 'LoRAModel',
    'MultiTaskDataPreprocessor', 'PadThenNormalizeDetDataPreprocessor',
    'RepeatedMapPixelDecoder', 'ShiftedLabelMask2FormerHead',
    'ShowAttendTellHead', 'UniTDETR', 'UniTDETRHead', 'ViSFT'
]
