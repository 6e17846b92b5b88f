"""Training loops and hooks of ViSFT, and the backbone swap of its
evaluations."""
# registers mmdet's loops and hooks for the visft_mm scope
import mmdet.engine  # noqa: F401

from .backbone_checkpoint_hook import (BackboneCheckpointHook,
                                       load_module_weights)
from .checkpoint_fit_hook import CheckpointFitHook
from .forked_rng_val_loop import ForkedRNGValLoop
from .lora_meta_hook import LoRAMetaHook
from .multi_task_log_processor import MultiTaskLogProcessor
from .multi_task_loops import (MultiTaskTestLoop, MultiTaskTrainLoop,
                               MultiTaskValLoop, sample_task, task_counts)
from .multi_task_visualization_hook import MultiTaskVisualizationHook
from .optim_wrapper import MixedPrecisionOptimWrapper
from .random_state_hook import RandomStateHook

__all__ = [
    'BackboneCheckpointHook', 'CheckpointFitHook', 'ForkedRNGValLoop',
    'LoRAMetaHook', 'load_module_weights', 'MultiTaskLogProcessor',
    'MultiTaskTrainLoop', 'MultiTaskValLoop', 'MultiTaskTestLoop',
    'MultiTaskVisualizationHook', 'MixedPrecisionOptimWrapper',
    'RandomStateHook', 'sample_task', 'task_counts'
]
