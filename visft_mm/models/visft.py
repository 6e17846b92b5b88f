"""The ViSFT model: one shared vision backbone, task models on its features.

Written here because no OpenMMLab package trains one backbone under several
task models with task-homogeneous batches. Each task model is a complete
OpenMMLab model (mmdet ``DETR``, mmdet ``Mask2Former``, visft_mm
``ImageCaptioner``) whose backbone is :class:`FeaturesAsInput`, so its own
``loss``/``predict`` run unchanged on the shared features. A batch names its
task in ``data['task']``; :class:`MultiTaskDataPreprocessor` applies that
task's preprocessor, and ``forward`` routes to that task's model, so mmengine's
``train_step``/``val_step`` and ``MMDistributedDataParallel`` work as they are.

The stage is set by the config: stage 1 freezes the backbone
(``FrozenBackbone(module=EVAViT)``) and trains one task model; stage 2 puts
LoRA into that frozen backbone (``LoRAModel(module=FrozenBackbone(...))``),
freezes the task models (``freeze_tasks=True``) and loads them from their
stage-1 checkpoints (``task_checkpoints``). Checkpoints hold every tensor but
the frozen backbone's, which ``FrozenBackbone`` loads from the ViT's
``init_cfg``.
"""
import copy
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseDataPreprocessor, BaseModel, ModuleDict

from visft_mm.checkpoints.io import load_model_state_dict, module_misfit
from visft_mm.registry import MODELS

SHARED_BACKBONE = dict(type='visft_mm.FeaturesAsInput')


def _resolve_task(task: Optional[str], tasks: List[str]) -> str:
    if task is None:
        if len(tasks) == 1:
            return tasks[0]
        raise KeyError(
            f'the batch names no task, and this model has several: {tasks}')
    if task not in tasks:
        raise KeyError(f'unknown task {task!r}; this model has {tasks}')
    return task


@MODELS.register_module()
class MultiTaskDataPreprocessor(BaseDataPreprocessor):
    """Applies the data preprocessor of the batch's task (``data['task']``)
    and keeps the task name in the result."""

    def __init__(self, preprocessors: Dict[str, dict]):
        super().__init__()
        self.preprocessors = nn.ModuleDict({
            task: MODELS.build(cfg)
            for task, cfg in preprocessors.items()
        })

    def forward(self, data: dict, training: bool = False) -> dict:
        task = _resolve_task(data.get('task'), list(self.preprocessors))
        batch = {k: v for k, v in data.items() if k != 'task'}
        out = self.preprocessors[task](batch, training)
        out['task'] = task
        return out


@MODELS.register_module()
class ViSFT(BaseModel):
    """Shared backbone + task models.

    Args:
        backbone: The vision backbone: a ``FrozenBackbone`` of an ``EVAViT``
            (stage 1), or a ``LoRAModel`` of one (stage 2).
        tasks: Task name → task model config. Each config carries its own
            ``data_preprocessor``; its ``backbone`` is set to
            ``FeaturesAsInput`` (a config naming another backbone is an error).
        freeze_tasks: Stop gradients into every task model (ViSFT stage 2).
            They stay in the train mode of the model, as in the official code.
        task_checkpoints: Task name → checkpoint of a model that holds that
            task (a stage-1 run). Loaded strictly by :meth:`init_weights`:
            a missing or unexpected key of the task is an error.
    """

    def __init__(self,
                 backbone: dict,
                 tasks: Dict[str, dict],
                 freeze_tasks: bool = False,
                 task_checkpoints: Optional[Dict[str, str]] = None,
                 init_cfg: Optional[dict] = None):
        if not tasks:
            raise ValueError('ViSFT needs at least one task')
        task_cfgs, preprocessors = {}, {}
        for name, cfg in tasks.items():
            cfg = ConfigDict(
                copy.deepcopy(cfg))  # mmdet models expect ConfigDicts
            own_backbone = cfg.get('backbone')
            if own_backbone is not None and own_backbone.get('type') not in (
                    'FeaturesAsInput', 'visft_mm.FeaturesAsInput'):
                raise ValueError(
                    f'task {name!r} configures its own backbone '
                    f'({own_backbone.get("type")}); ViSFT tasks share '
                    '`backbone`')
            cfg['backbone'] = SHARED_BACKBONE
            if 'data_preprocessor' not in cfg:
                raise ValueError(f'task {name!r} has no data_preprocessor')
            preprocessors[name] = cfg.pop('data_preprocessor')
            task_cfgs[name] = cfg
        unknown = set(task_checkpoints or {}) - set(tasks)
        if unknown:
            raise KeyError(
                f'task_checkpoints names unknown tasks {sorted(unknown)}; '
                f'this model has {sorted(tasks)}')
        super().__init__(
            data_preprocessor=dict(
                type='visft_mm.MultiTaskDataPreprocessor',
                preprocessors=preprocessors),
            init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        # mmengine's ModuleDict, so init_weights() reaches every task model
        self.tasks = ModuleDict({
            name: MODELS.build(cfg)
            for name, cfg in task_cfgs.items()
        })
        if freeze_tasks:
            self.tasks.requires_grad_(False)
        self.task_checkpoints = dict(task_checkpoints or {})

    @property
    def task_names(self) -> List[str]:
        return list(self.tasks)

    def forward(self,
                inputs: torch.Tensor,
                data_samples=None,
                mode: str = 'tensor',
                task: Optional[str] = None):
        task = _resolve_task(task, self.task_names)
        feats = self.backbone(inputs)
        out = self.tasks[task](feats, data_samples, mode=mode)
        if mode == 'loss':
            return {f'{task}.{key}': value for key, value in out.items()}
        return out

    def init_weights(self) -> None:
        super().init_weights()
        for task, path in self.task_checkpoints.items():
            self._load_task(task, path)

    def _load_task(self, task: str, path: str) -> None:
        prefix = f'tasks.{task}.'
        state = load_model_state_dict(path)
        weights = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
        if not weights:
            found = sorted(
                {k.split('.')[1]
                 for k in state if k.startswith('tasks.')})
            raise KeyError(f'{path} holds no weights of task {task!r} '
                           f'(it has tasks {found or "none"})')
        misfit = module_misfit(self.tasks[task], weights)
        if misfit:
            raise KeyError(f'{path} does not fit task {task!r}: {misfit}')
        self.tasks[task].load_state_dict(weights, strict=True)
        print_log(
            f'task {task!r}: loaded {len(weights)} tensors from {path}',
            logger='current')
