"""A hook for the DDP test: records each rank's task per iteration and its
final LoRA tensors in the work dir."""
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from visft_mm.registry import HOOKS


@HOOKS.register_module()
class RecordTasksAndLoRA(Hook):

    def before_train(self, runner):
        self.tasks = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.tasks.append(data_batch['task'])

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(dict(tasks=self.tasks, lora=model.backbone.lora_state_dict()),
                   f'{runner.work_dir}/rank{get_rank()}.pt')
