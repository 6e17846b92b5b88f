"""Pictures of every task's predictions while testing or validating, each
task drawn with its own dataset's class names into a folder of its own.

mmdet's ``DetVisualizationHook`` draws one dataset into one folder with the
visualizer's one ``dataset_meta``. Written here is only the routing: each
batch's task (``data_batch['task']``, set by the multi-task loops, or a
single-task model's one task) gets a ``DetVisualizationHook`` of its own
drawing into ``<test_out_dir>/<task>/``, and the visualizer is given that
task's dataset metainfo before it draws.
"""
import os.path as osp
from typing import Dict, Optional, Sequence

from mmdet.engine.hooks import DetVisualizationHook
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from visft_mm.registry import HOOKS


def batch_task(runner, data_batch: dict) -> Optional[str]:
    """The task of a batch: the one the multi-task loops name, else the model's
    only task; ``None`` for a model without tasks."""
    if data_batch.get('task') is not None:
        return data_batch['task']
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    tasks = getattr(model, 'task_names', [])
    return tasks[0] if len(tasks) == 1 else None


@HOOKS.register_module()
class MultiTaskVisualizationHook(Hook):
    """``DetVisualizationHook`` per task, with the same arguments; with
    ``test_out_dir`` each task draws into ``<test_out_dir>/<task>/`` (under
    ``<work dir>/<timestamp>/`` unless absolute, as mmdet does). A model
    without tasks draws into ``test_out_dir`` itself."""

    priority = 'NORMAL'

    def __init__(self,
                 draw: bool = False,
                 interval: int = 50,
                 score_thr: float = 0.3,
                 show: bool = False,
                 wait_time: float = 0.,
                 test_out_dir: Optional[str] = None,
                 backend_args: Optional[dict] = None):
        self.draw = draw
        self.test_out_dir = test_out_dir
        self.task_hook_args = dict(
            draw=draw,
            interval=interval,
            score_thr=score_thr,
            show=show,
            wait_time=wait_time,
            backend_args=backend_args)
        self.task_hooks: Dict[Optional[str], DetVisualizationHook] = {}

    def task_hook(self, runner, loop,
                  data_batch: dict) -> DetVisualizationHook:
        """The hook of the batch's task, the visualizer given the metainfo of
        that task's dataset."""
        task = batch_task(runner, data_batch)
        if task not in self.task_hooks:
            out_dir = self.test_out_dir
            if out_dir is not None and task is not None:
                out_dir = osp.join(out_dir, task)
            hook = DetVisualizationHook(
                test_out_dir=out_dir, **self.task_hook_args)
            # the runner's own visualizer, not mmengine's latest-created one
            hook._visualizer = runner.visualizer
            if hook.show:  # as mmdet's hook does to the one it found
                runner.visualizer._vis_backends = {}
            self.task_hooks[task] = hook
        loader = getattr(loop, 'task_dataloaders',
                         {}).get(task, loop.dataloader)
        if hasattr(loader.dataset, 'metainfo'):
            runner.visualizer.dataset_meta = loader.dataset.metainfo
        return self.task_hooks[task]

    def after_val_iter(self, runner, batch_idx: int, data_batch: dict,
                       outputs: Sequence) -> None:
        if self.draw:
            self.task_hook(runner, runner.val_loop,
                           data_batch).after_val_iter(runner, batch_idx,
                                                      data_batch, outputs)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence) -> None:
        if self.draw:
            self.task_hook(runner, runner.test_loop,
                           data_batch).after_test_iter(runner, batch_idx,
                                                       data_batch, outputs)

    def picture_dirs(self) -> Dict[Optional[str], str]:
        """Task → the folder its pictures went to, once drawn."""
        return {
            task: hook.test_out_dir
            for task, hook in self.task_hooks.items()
            if hook.test_out_dir is not None
        }
