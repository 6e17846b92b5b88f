"""Models of visft_mm: the EVA vision transformer, its LoRA and the task heads."""
from .backbones import EVAViT, FeaturesAsInput
from .captioner import ImageCaptioner
from .heads import ShowAttendTellHead
from .peft import LoRALinear, LoRAModel

__all__ = ['EVAViT', 'FeaturesAsInput', 'ImageCaptioner', 'LoRALinear', 'LoRAModel',
           'ShowAttendTellHead']
