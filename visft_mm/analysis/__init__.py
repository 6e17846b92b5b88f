"""What a ViSFT training iteration costs: synthetic batches of a config's
sizes, FLOPs and memory (the tools in tools/analysis_tools/ print them)."""
from .cost_model import (CostEstimate, TaskCost,
                         build_model_with_fake_backbone, estimate_cost,
                         projected_seconds)
from .synthetic import (TaskInput, caption_vocabulary,
                        model_config_without_files, synthetic_batch,
                        task_inputs, task_ratios)

__all__ = [
    'CostEstimate', 'TaskCost', 'TaskInput', 'build_model_with_fake_backbone',
    'caption_vocabulary', 'estimate_cost', 'model_config_without_files',
    'projected_seconds', 'synthetic_batch', 'task_inputs', 'task_ratios'
]
