"""Models of visft_mm: the EVA vision transformer, its LoRA, the task heads,
the mmdet modules they need on GPUs without compiled mmcv kernels, and EVA-CLIP
for the out-of-domain benchmarks."""
# The visft_mm scope resolves mmdet models without prefix; importing registers
# them.
import mmdet.models  # noqa: F401

from .backbones import EVAViT, FeaturesAsInput, FrozenBackbone
from .captioner import ImageCaptioner
from .data_preprocessors import PadThenNormalizeDetDataPreprocessor
from .detectors import AnyDeviceDINO, UniTDETR, UniTDETRHead
from .eva_clip import EVACLIP
from .heads import ShiftedLabelMask2FormerHead, ShowAttendTellHead
from .layers import (AnyDeviceMSDeformAttnPixelDecoder,
                     AnyDeviceMultiScaleDeformableAttention,
                     RepeatedMapPixelDecoder)
from .losses import AnyDeviceFocalLoss
from .peft import LoRALinear, LoRAModel
from .visft import MultiTaskDataPreprocessor, ViSFT

__all__ = [
    'AnyDeviceDINO', 'AnyDeviceFocalLoss', 'AnyDeviceMSDeformAttnPixelDecoder',
    'AnyDeviceMultiScaleDeformableAttention', 'EVACLIP', 'EVAViT',
    'FeaturesAsInput', 'FrozenBackbone', 'ImageCaptioner', 'LoRALinear',
    'LoRAModel', 'MultiTaskDataPreprocessor',
    'PadThenNormalizeDetDataPreprocessor', 'RepeatedMapPixelDecoder',
    'ShiftedLabelMask2FormerHead', 'ShowAttendTellHead', 'UniTDETR',
    'UniTDETRHead', 'ViSFT'
]
