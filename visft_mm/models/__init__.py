"""Models of visft_mm: the EVA vision transformer and its LoRA."""
from .backbones import EVAViT
from .heads import ShowAttendTellHead
from .peft import LoRALinear, LoRAModel

__all__ = ['EVAViT', 'LoRALinear', 'LoRAModel', 'ShowAttendTellHead']
