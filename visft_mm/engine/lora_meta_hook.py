"""Store the settings of a run's LoRA layers in its checkpoints.

A stage-2 checkpoint holds the LoRA tensors but not their alpha or adapted
slices, which the shapes cannot tell; without them ``merge_lora.py`` would
have to be told (``--alpha``) and merges at the wrong scale when it is not.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from visft_mm.checkpoints.lora_files import RUN_META_KEY, lora_layers_meta
from visft_mm.models.peft import LoRAModel
from visft_mm.registry import HOOKS


@HOOKS.register_module()
class LoRAMetaHook(Hook):
    """Writes rank, alpha and slices of every LoRA layer of the model to
    ``checkpoint['meta']['lora']``, keyed by the layer's name in the
    checkpoint (``backbone.module.module.blocks.0.attn.qkv``); a model
    without LoRA adds nothing."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        layers = {}
        for name, module in model.named_modules():
            if isinstance(module, LoRAModel):
                prefix = f'{name}.' if name else ''
                layers.update(
                    lora_layers_meta(module, prefix + module.network_prefix))
        if layers:
            checkpoint.setdefault('meta', {})[RUN_META_KEY] = layers
