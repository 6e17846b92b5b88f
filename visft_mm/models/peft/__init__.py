from .lora import LoRALinear, LoRAModel

__all__ = ['LoRALinear', 'LoRAModel']
