"""Models of visft_mm: the EVA vision transformer, its LoRA and the task heads."""
# The visft_mm scope resolves mmdet models without prefix; importing registers them.
import mmdet.models  # noqa: F401

from .backbones import EVAViT, FeaturesAsInput, FrozenBackbone
from .captioner import ImageCaptioner
from .heads import ShowAttendTellHead
from .peft import LoRALinear, LoRAModel
from .visft import MultiTaskDataPreprocessor, ViSFT

__all__ = ['EVAViT', 'FeaturesAsInput', 'FrozenBackbone', 'ImageCaptioner', 'LoRALinear',
           'LoRAModel', 'MultiTaskDataPreprocessor', 'ShowAttendTellHead', 'ViSFT']
