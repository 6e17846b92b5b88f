"""A hook for the multi-process tests: records each rank's task per iteration,
the task and samples of every micro-batch its model sees, and its final LoRA
tensors, in the work dir."""
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from visft_mm.registry import HOOKS


def sample_name(sample) -> tuple:
    """An image path and, for captions, the caption: one dataset item."""
    return sample.img_path, sample.get('gt_caption')


@HOOKS.register_module()
class RecordTasksAndLoRA(Hook):

    def before_train(self, runner):
        self.tasks, self.micro_batches = [], []
        self.model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.model.data_preprocessor.register_forward_pre_hook(
            self.record_micro_batch)

    def record_micro_batch(self, module, args):
        data = args[0]
        self.micro_batches.append(
            (data['task'],
             [sample_name(sample) for sample in data['data_samples']]))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.tasks.append(data_batch['task'])

    def after_train(self, runner):
        torch.save(
            dict(
                tasks=self.tasks,
                micro_batches=self.micro_batches,
                lora=self.model.backbone.lora_state_dict()),
            f'{runner.work_dir}/rank{get_rank()}.pt')
