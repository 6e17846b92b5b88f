"""Log lines of multi-task training: the task that ran and only its losses.

mmengine's ``LogProcessor`` prints every ``train/`` scalar of the message hub,
each smoothed over its last ``window_size`` values. Under
:class:`MultiTaskTrainLoop` an iteration trains one task, so such a line
shows the losses of every task, those of the tasks that did not run being
whatever their last iterations left, and a ``loss`` averaged over the totals
of different tasks. Written here because mmengine has no notion of a task.

The loops record in the message hub the task of the current iteration
(runtime info, not resumed) and, after each training iteration, its total
loss under that task (``multi_task/loss/<task>``, kept with the hub in
checkpoints). A training line then names the task that ran and shows its
``<task>.*`` losses and ``loss``, each the mean of that task's last
``window_size`` iterations: no value of another task enters. The learning
rate, time, eta and memory fields are mmengine's. Validation and testing
progress lines name the task they evaluate. Without a recorded task (a
single-task loop) lines are mmengine's.
"""
from collections import OrderedDict

from mmengine.logging import MessageHub
from mmengine.runner import LogProcessor

from visft_mm.registry import LOG_PROCESSORS

TASK_INFO = 'multi_task/task'
TASK_LOSS_PREFIX = 'multi_task/loss/'


def record_task(message_hub: MessageHub, task: str) -> None:
    """Record the task that the current iteration trains or evaluates."""
    message_hub.update_info(TASK_INFO, task, resumed=False)


def record_task_loss(message_hub: MessageHub, task: str, loss) -> None:
    """Record the total loss of a training iteration of ``task``."""
    message_hub.update_scalar(TASK_LOSS_PREFIX + task, loss)


@LOG_PROCESSORS.register_module()
class MultiTaskLogProcessor(LogProcessor):
    """``LogProcessor`` whose lines name the task of the iteration and, in
    training, show only that task's losses, smoothed over its own
    iterations."""

    def get_log_after_iter(self, runner, batch_idx: int, mode: str):
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        task = runner.message_hub.get_info(TASK_INFO)
        if task is None:
            return tag, log_str
        # the task is text for the log line, not a scalar for the backends
        tag.pop('task', None)
        if mode != 'train':
            log_str = f'{log_str.rstrip()}  task: {task}'
        return tag, log_str

    def _collect_scalars(self,
                         custom_cfg,
                         runner,
                         mode: str,
                         reserve_prefix: bool = False) -> dict:
        tag = super()._collect_scalars(custom_cfg, runner, mode,
                                       reserve_prefix)
        hub = runner.message_hub
        task = hub.get_info(TASK_INFO)
        if mode != 'train' or task is None:
            return tag
        prefix = f'{mode}/' if reserve_prefix else ''
        other_tasks = tuple(
            f'{prefix}{key[len(TASK_LOSS_PREFIX):]}.'
            for key in hub.log_scalars
            if key.startswith(TASK_LOSS_PREFIX) and key != TASK_LOSS_PREFIX +
            task)
        task_tag = OrderedDict() if reserve_prefix else OrderedDict(task=task)
        task_tag.update((key, value) for key, value in tag.items()
                        if not key.startswith(other_tasks))
        totals = hub.log_scalars.get(TASK_LOSS_PREFIX + task)
        if f'{prefix}loss' in task_tag and totals is not None:
            task_tag[f'{prefix}loss'] = totals.mean(self.window_size)
        return task_tag
