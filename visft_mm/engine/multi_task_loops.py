"""Multi-task loops of ViSFT stage 2: a task per iteration, all validated.

Written here because mmengine's loops take one dataloader, while ViSFT draws
each iteration's task by ratio (caption 0.4, segmentation 0.3, detection 0.3)
and each task has its own dataset, pipeline and batch size. The loaders are
built as mmengine's loops build theirs (the run's seed,
``randomness.diff_rank_seed``, the warning for a dataset without metainfo).

The task of iteration ``i`` is a pure function of ``(seed, i)``, with the
run's seed less the rank that ``diff_rank_seed`` adds, so every rank runs the
same task without communication, and a resumed run replays the exact task
sequence. Each task's loader uses an ``InfiniteSampler``, restarted at that
seed when training starts; on resume it is advanced by the number of samples
that task consumed, by index only (no data is loaded). Evaluation runs inside
a forked random state, so validating never changes the training randomness.

Gradient accumulation is mmengine's (``optim_wrapper.accumulative_counts``:
loss scaling, the step after the last micro-batch, no DDP sync before it).
Written here is only what its loops lack: an iteration that runs all of an
optimizer step's micro-batches, on one task, so that iterations, schedules
and intervals count optimizer steps (mmengine's loops count micro-batches).

The loops record each iteration's task (and a training iteration's total
loss) in the message hub, for :class:`MultiTaskLogProcessor`'s lines.
"""
import contextlib
import logging
import random
from itertools import islice
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_rank
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.amp import autocast
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.loops import calc_dynamic_intervals
from prettytable import PrettyTable
from torch.utils.data import DataLoader

from visft_mm.registry import LOOPS
from visft_mm.utils.required_paths import InputError
from .multi_task_log_processor import record_task, record_task_loss

LoaderOrCfg = Union[dict, DataLoader]


def sample_task(seed: int, iteration: int, tasks: Sequence[str],
                probabilities: Sequence[float]) -> str:
    """The task of one iteration; the same on every rank for the same seed:
    ``numpy.random.default_rng([seed, iteration]).choice`` with ``p``."""
    rng = np.random.default_rng([seed, iteration])
    return tasks[int(rng.choice(len(tasks), p=probabilities))]


def task_counts(seed: int, num_iters: int, tasks: Sequence[str],
                probabilities: Sequence[float]) -> Dict[str, int]:
    """How many of the first ``num_iters`` iterations drew each task."""
    counts = dict.fromkeys(tasks, 0)
    for i in range(num_iters):
        counts[sample_task(seed, i, tasks, probabilities)] += 1
    return counts


@contextlib.contextmanager
def preserved_random_state():
    """Run a block without changing the python, numpy and torch RNG states."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(
        torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def shared_seed(runner) -> int:
    """The run's seed, the same on every rank: ``runner.seed`` less the rank
    that ``randomness.diff_rank_seed`` adds to it (mmengine's
    ``set_random_seed``)."""
    if runner._randomness_cfg.get('diff_rank_seed', False):
        return runner.seed - get_rank()
    return runner.seed


def build_task_dataloaders(runner, dataloaders: Dict[str, LoaderOrCfg]):
    """Each task's loader, built as mmengine's ``BaseLoop`` builds a loop's
    one: seeded by the run, with a sampler seed shared by all ranks under
    ``randomness.diff_rank_seed``."""
    diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
    built: Dict[str, DataLoader] = {}
    for task, loader in dataloaders.items():
        built[task] = runner.build_dataloader(
            loader, seed=runner.seed, diff_rank_seed=diff_rank_seed)
    return built


def dataset_meta(loader: DataLoader, users: str) -> Optional[dict]:
    """The metainfo of the loader's dataset; if it has none, mmengine's
    loops' warning that ``users`` get ``None``."""
    if hasattr(loader.dataset, 'metainfo'):
        return loader.dataset.metainfo
    print_log(
        f'Dataset {type(loader.dataset).__name__} has no metainfo. '
        f'``dataset_meta`` in {users} will be None.',
        logger='current',
        level=logging.WARNING)
    return None


def restart_sampler(sampler: InfiniteSampler, seed: int, skip: int) -> None:
    """Restart an ``InfiniteSampler``'s index stream from ``seed`` (through
    its constructor: it has no public reseed) and skip its first ``skip``
    indices, by index only."""
    InfiniteSampler.__init__(
        sampler, sampler.dataset, shuffle=sampler.shuffle, seed=seed)
    for _ in islice(sampler.indices, skip):
        pass


def check_model_has_tasks(runner, tasks: Sequence[str], what: str) -> None:
    """Fail before any work if the model has no tasks or lacks a task that
    the loaders name."""
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    known = getattr(model, 'task_names', None)
    if known is None:
        raise TypeError(
            f'{what} name tasks {sorted(tasks)}, but the model '
            f'({type(model).__name__}) has no task_names: the multi-task '
            'loops need a multi-task model such as ViSFT')
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        raise KeyError(
            f'{what} name tasks {unknown} that the model does not have '
            f'(model tasks: {known})')


def _check_ratios(task_ratios: Dict[str, float]) -> List[float]:
    if not task_ratios or any(r < 0 for r in task_ratios.values()):
        raise ValueError(
            f'task_ratios must be non-negative weights, got {task_ratios}')
    total = float(sum(task_ratios.values()))
    if total <= 0:
        raise ValueError(f'task_ratios sum to zero: {task_ratios}')
    return [r / total for r in task_ratios.values()]


@LOOPS.register_module()
class MultiTaskTrainLoop(IterBasedTrainLoop):
    """Iteration-based training over several task dataloaders.

    Args:
        runner: The runner.
        dataloader: Task name → dataloader (config). Every loader must use
            ``InfiniteSampler``; batch sizes and pipelines may differ.
        max_iters: Total iterations (optimizer steps).
        task_ratios: Task name → sampling weight (normalised). Must name
            exactly the tasks of ``dataloader``.
        val_begin, val_interval, dynamic_intervals: As ``IterBasedTrainLoop``.

    ``self.dataloader`` is the first task's loader, for hooks that read one
    (dataset metainfo, sampler seeding); ``task_dataloaders`` holds them all.

    Gradient accumulation: with ``accumulative_counts=n`` in ``optim_wrapper``
    an iteration is still one optimizer step. It draws its task once and runs
    ``train_step`` on ``n`` micro-batches of that task; mmengine's optimizer
    wrapper divides each loss by ``n``, skips the DDP gradient sync of all but
    the last and steps after it. Iteration hooks run once per step, with the
    first micro-batch as ``data_batch`` and the micro-batches' mean log
    variables as ``outputs``. So ``max_iters``, the parameter schedules and the
    checkpoint, log and validation intervals count optimizer steps, and one GPU
    with ``n`` micro-batches follows the schedule of ``n`` GPUs. :meth:`run`
    re-initialises the wrapper's count status, which ``Runner.train()`` set in
    iterations, in micro-batches (``iter * n`` of ``max_iters * n``); the
    warning that the first call may log on resume (iteration not divisible by
    ``accumulative_counts``) does not apply here.
    """

    def __init__(self,
                 runner,
                 dataloader: Dict[str, LoaderOrCfg],
                 max_iters: int,
                 task_ratios: Dict[str, float],
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals=None) -> None:
        if not isinstance(dataloader, dict) or not dataloader:
            raise TypeError('MultiTaskTrainLoop needs '
                            'train_dataloader = dict(task=loader, ...)')
        unknown = sorted(set(task_ratios) - set(dataloader))
        unweighted = sorted(set(dataloader) - set(task_ratios))
        if unknown or unweighted:
            problem = (f'names {unknown}, which no train dataloader has'
                       if unknown else f'has no ratio for {unweighted}')
            raise InputError(f'train_cfg.task_ratios {problem} (train '
                             f'dataloaders: {sorted(dataloader)})')
        self.tasks = list(task_ratios)
        self.probabilities = _check_ratios(task_ratios)
        in_ratio_order = {task: dataloader[task] for task in self.tasks}
        self.task_dataloaders = build_task_dataloaders(runner, in_ratio_order)
        for task, loader in self.task_dataloaders.items():
            if loader.batch_size is None:
                raise TypeError(
                    f'the {task!r} train dataloader uses a custom '
                    'batch_sampler; MultiTaskTrainLoop needs a plain '
                    'batch_size to resume exactly')
            if not isinstance(loader.sampler, InfiniteSampler):
                raise TypeError(
                    f'the {task!r} train dataloader must use InfiniteSampler '
                    f'(got {type(loader.sampler).__name__}), so that each '
                    'task streams on and resumes exactly')
        # BaseLoop's __init__, not IterBasedTrainLoop's: that one opens an
        # iterator on its loader, starting workers that no iteration uses
        BaseLoop.__init__(self, runner, self.task_dataloaders[self.tasks[0]])
        self._max_iters = int(max_iters)
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        self.runner.visualizer.dataset_meta = dataset_meta(
            self.dataloader, 'visualizer')
        self.dynamic_milestones, self.dynamic_intervals = \
            calc_dynamic_intervals(self.val_interval, dynamic_intervals)
        self._iterators: Dict[str, object] = {}
        # micro-batches per iteration, and the seed of the task draws and
        # samplers: run() sets them once the optimizer wrapper is built and
        # a resume is loaded
        self.micro_steps = 1
        self.seed = shared_seed(runner)

    def _count_micro_steps(self) -> None:
        """Take the micro-batches per iteration from the optimizer wrapper
        and count its accumulation in micro-batches from ``self._iter`` on."""
        optim_wrapper = self.runner.optim_wrapper
        # read as mmengine's strategies do: OptimWrapper has no accessor
        self.micro_steps = getattr(optim_wrapper, '_accumulative_counts', 1)
        optim_wrapper.initialize_count_status(
            self.runner.model, self._iter * self.micro_steps,
            self._max_iters * self.micro_steps)

    def _start_task_streams(self) -> None:
        """Restart every task's sampler at the run's shared seed and skip
        what the first ``self._iter`` iterations consumed (after a resume)."""
        self.seed = shared_seed(self.runner)
        consumed = task_counts(self.seed, self._iter, self.tasks,
                               self.probabilities)
        for task, loader in self.task_dataloaders.items():
            restart_sampler(
                loader.sampler, self.seed,
                consumed[task] * self.micro_steps * loader.batch_size)
            self._iterators[task] = iter(loader)
        if self._iter:
            print_log(
                f'Resumed at iteration {self._iter}: skipped '
                f'{self.micro_steps} batch(es) per earlier iteration of '
                f'each task {consumed}',
                logger='current')

    def next_batches(self, iteration: int) -> List[dict]:
        """The micro-batches of one iteration, all of the task it draws."""
        task = sample_task(self.seed, iteration, self.tasks,
                           self.probabilities)
        batches = [
            next(self._iterators[task]) for _ in range(self.micro_steps)
        ]
        for batch in batches:
            batch['task'] = task
        return batches

    def run(self) -> torch.nn.Module:
        check_model_has_tasks(self.runner, self.tasks,
                              'train_dataloader/task_ratios')
        self._count_micro_steps()
        self._start_task_streams()
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(self.next_batches(self._iter))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        # release the loaders' iterators, so their data workers stop now
        # rather than whenever the loop is garbage collected
        self._iterators.clear()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, micro_batches: List[dict]) -> None:
        """One optimizer step: ``train_step`` on each micro-batch, hooks
        once."""
        task = micro_batches[0]['task']
        record_task(self.runner.message_hub, task)
        self.runner.call_hook(
            'before_train_iter',
            batch_idx=self._iter,
            data_batch=micro_batches[0])
        log_vars = [
            self.runner.model.train_step(
                batch, optim_wrapper=self.runner.optim_wrapper)
            for batch in micro_batches
        ]
        outputs = {
            key: sum(step[key].detach() for step in log_vars) / len(log_vars)
            for key in log_vars[0]
        }
        if 'loss' in outputs:
            record_task_loss(self.runner.message_hub, task, outputs['loss'])
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=self._iter,
            data_batch=micro_batches[0],
            outputs=outputs)
        self._iter += 1


def task_metric_key(task: str, key: str) -> str:
    """A task's metric under its task name (``detection/coco/bbox_mAP``);
    once only, when the metric's own prefix is the task name
    (``caption/Bleu_1``)."""
    return key if key.startswith(f'{task}/') else f'{task}/{key}'


def metrics_table(metrics: Dict[str, Dict[str, object]]) -> str:
    """Task → its metrics (keyed by :func:`task_metric_key`) as a table with
    a row per task and metric, the task named on its first row only."""
    table = PrettyTable(['task', 'metric', 'value'], align='l')
    table.align['value'] = 'r'
    for task, task_metrics in metrics.items():
        for row, (key, value) in enumerate(task_metrics.items()):
            name = key[len(task) + 1:]
            if isinstance(value, float):
                value = f'{value:.4f}'
            table.add_row([task if row == 0 else '', name, value])
    return table.get_string()


class _MultiTaskEvalLoop(BaseLoop):
    """Evaluate every task on its own dataloader and evaluator; metrics are
    prefixed with the task name (:func:`task_metric_key`) and shown in one
    table at the end."""

    stage = 'val'

    def __init__(self,
                 runner,
                 dataloader: Dict[str, LoaderOrCfg],
                 evaluator: Dict[str, dict],
                 fp16: bool = False) -> None:
        if not isinstance(dataloader, dict) \
                or not isinstance(evaluator, dict) \
                or set(dataloader) != set(evaluator):
            raise KeyError(
                f'{self.stage}_dataloader and {self.stage}_evaluator must be '
                'dicts keyed by the same task names')
        self.task_dataloaders = build_task_dataloaders(runner, dataloader)
        # hooks read one loader: the first task's until run() moves it on
        super().__init__(runner, next(iter(self.task_dataloaders.values())))
        self.evaluator: Dict[str, Evaluator] = {}
        for task, loader in self.task_dataloaders.items():
            evaluator_cfg = evaluator[task]
            self.evaluator[task] = (
                evaluator_cfg if isinstance(evaluator_cfg, Evaluator) else
                runner.build_evaluator(evaluator_cfg))
            self.evaluator[task].dataset_meta = dataset_meta(
                loader, f'the {task!r} evaluator and metric')
        self.fp16 = fp16

    def run(self) -> dict:
        hook = self.stage
        check_model_has_tasks(self.runner, list(self.task_dataloaders),
                              f'{self.stage}_dataloader')
        self.runner.call_hook(f'before_{hook}')
        self.runner.call_hook(f'before_{hook}_epoch')
        self.runner.model.eval()
        per_task = {}
        with preserved_random_state():
            for task, loader in self.task_dataloaders.items():
                # hooks log progress against the current task
                self.dataloader = loader
                record_task(self.runner.message_hub, task)
                evaluator = self.evaluator[task]
                for batch_idx, data_batch in enumerate(loader):
                    data_batch['task'] = task
                    self.run_iter(batch_idx, data_batch, evaluator)
                per_task[task] = {
                    task_metric_key(task, key): value
                    for key, value in evaluator.evaluate(len(
                        loader.dataset)).items()
                }
        metrics = {
            key: value
            for task_metrics in per_task.values()
            for key, value in task_metrics.items()
        }
        self.runner.call_hook(f'after_{hook}_epoch', metrics=metrics)
        print_log(
            f'Metrics of every task ({self.stage}):\n' +
            metrics_table(per_task),
            logger='current')
        self.runner.call_hook(f'after_{hook}')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict,
                 evaluator: Evaluator) -> None:
        hook = self.stage
        self.runner.call_hook(
            f'before_{hook}_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = getattr(self.runner.model, f'{hook}_step')(data_batch)
        evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            f'after_{hook}_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)


@LOOPS.register_module()
class MultiTaskValLoop(_MultiTaskEvalLoop):
    """Validation of every task (``val_dataloader``/``val_evaluator``
    dicts)."""

    stage = 'val'


@LOOPS.register_module()
class MultiTaskTestLoop(_MultiTaskEvalLoop):
    """Testing of every task (``test_dataloader``/``test_evaluator`` dicts)."""

    stage = 'test'
