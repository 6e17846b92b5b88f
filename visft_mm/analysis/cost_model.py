"""Cost of one ViSFT training iteration per task: FLOPs and peak memory,
counted on a CPU.

The backbone (up to 4.4B parameters) runs on fake tensors (torch's
``FakeTensorMode``: shapes, dtypes and autograd, no data) under the config's
autocast and gradient checkpointing; on fake CPU tensors, autocast follows its
CPU rules and attention takes the CPU flash kernel, which saves what the
GPU's flash kernel saves. The task heads run for real on CPU, in float32, on
random features of the backbone's output shape, because mmdet's Hungarian
matcher hands its cost matrix to scipy. The work runs in a GPU's order:
backbone forward, heads forward and backward, backbone backward.

FLOPs are ``torch.utils.flop_counter.FlopCounterMode``'s: matrix products,
convolutions and attention (elementwise ops, normalisation and sampling count
zero). Written here are only what torch lacks: formulas for in-place
``addmm_`` (LoRA's update) and CPU flash attention; an attention backward
without the q @ k^T that flash kernels recompute, for model FLOPs; and a
tracker of live tensor memory, because torch's ``MemTracker`` hooks every
parameter and fails on frozen ones.
"""
import contextlib
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import (FlopCounterMode,
                                      sdpa_backward_flop_count,
                                      sdpa_flop_count)
from torch.utils.weak import WeakIdKeyDictionary

from visft_mm.registry import MODELS
from .synthetic import (TaskInput, caption_vocabulary,
                        model_config_without_files, synthetic_batch,
                        task_inputs)

aten = torch.ops.aten
GIB = 2**30
# The recipes' global batch: 8 GPUs (the paper's 8 V100s) times the per-GPU
# batch.
RECIPE_GPUS = 8
# Dense bf16 tensor-core peaks (vendor data sheets, TFLOP/s), matched against
# torch.cuda.get_device_name() in this order (a longer name before its prefix).
BF16_DENSE_TFLOPS = (('H100 PCIe', 756.), ('H100 NVL', 835.), ('H100', 989.),
                     ('H200', 989.), ('B200', 2250.), ('A100', 312.),
                     ('L40S', 362.), ('L4', 121.), ('A10', 125.), ('RTX 4090',
                                                                   165.))


def bf16_peak_tflops(device_name: str) -> Optional[float]:
    """The dense bf16 peak of a GPU named like
    ``torch.cuda.get_device_name()``."""
    for name, tflops in BF16_DENSE_TFLOPS:
        if name in device_name:
            return tflops
    return None


def _addmm_flop(self_shape,
                a_shape,
                b_shape,
                *args,
                out_shape=None,
                **kwargs) -> int:
    """In-place ``addmm_`` (LoRA's update of its output slices), as
    ``addmm``."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def _attention_flop(query_shape,
                    key_shape,
                    value_shape,
                    *args,
                    out_shape=None,
                    **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward_flop(grad_out_shape,
                             query_shape,
                             key_shape,
                             value_shape,
                             *args,
                             out_shape=None,
                             **kwargs) -> int:
    """As flash kernels run it: q @ k^T recomputed, then four gradient
    products."""
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape,
                                    value_shape)


def _attention_backward_model_flop(grad_out_shape,
                                   query_shape,
                                   key_shape,
                                   value_shape,
                                   *args,
                                   out_shape=None,
                                   **kwargs) -> int:
    """The four gradient products alone: twice the forward's two."""
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


# What the hardware executes (checkpointed blocks run twice, flash backward
# recomputes q @ k^T) and model FLOPs (every product once).
EXECUTED_FORMULAS = {
    aten.addmm_:
    _addmm_flop,
    aten._scaled_dot_product_flash_attention_for_cpu:
    _attention_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
    _attention_backward_flop,
}
MODEL_FORMULAS = {
    aten.addmm_: _addmm_flop,
    aten._scaled_dot_product_flash_attention_for_cpu: _attention_flop,
    **{
        op: _attention_backward_model_flop
        for op in (
            aten._scaled_dot_product_flash_attention_for_cpu_backward,
            aten._scaled_dot_product_flash_attention_backward,
            aten._scaled_dot_product_efficient_attention_backward,
            aten._scaled_dot_product_cudnn_attention_backward,
        )
    },
}


class FlopTally:
    """FLOPs per part of the model (``backbone``, ``heads``), counted both as
    model FLOPs and as executed FLOPs over any number of counted blocks."""

    def __init__(self):
        self.model: Dict[str, int] = defaultdict(int)
        self.executed: Dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def count(self, part: str) -> Iterator[None]:
        model = FlopCounterMode(display=False, custom_mapping=MODEL_FORMULAS)
        executed = FlopCounterMode(
            display=False, custom_mapping=EXECUTED_FORMULAS)
        with model, executed:
            yield
        self.model[part] += model.get_total_flops()
        self.executed[part] += executed.get_total_flops()


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the tensors that operators inside this mode create and that
    are still alive, each storage counted once, and their peak.

    It keeps counting while outside the mode (a tensor's bytes go when its
    storage is freed), so one tracker follows a whole iteration through
    several blocks. ``forget`` takes a tensor out of the count (parameter
    gradients, which are accounted separately); ``open_window`` starts a
    second peak, ``window_peak``, for the rise of one stretch of work.
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.window_peak = 0
        self._counted = WeakIdKeyDictionary()  # storage -> [bytes counted]

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._counted:
            return
        record = [storage.nbytes()]
        self._counted[storage] = record
        self.live += record[0]
        self.peak = max(self.peak, self.live)
        self.window_peak = max(self.window_peak, self.live)
        weakref.finalize(storage, self._release, record)

    def forget(self, tensor: torch.Tensor) -> None:
        record = self._counted.get(tensor.untyped_storage())
        if record is not None:
            self._release(record)

    def open_window(self) -> int:
        """Start ``window_peak`` at the live bytes, and return them."""
        self.window_peak = self.live
        return self.live

    @contextlib.contextmanager
    def forgetting_gradients(self, module: nn.Module) -> Iterator[None]:
        """Leave the gradients of ``module``'s parameters out of the count."""
        hooks = [
            p.register_post_accumulate_grad_hook(lambda p: self.forget(p.grad))
            for p in module.parameters() if p.requires_grad
        ]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _release(self, record: list) -> None:
        self.live -= record[0]
        record[0] = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # outputs that alias an input (views, in-place results) hold no new
        # memory
        inputs = {
            id(t.untyped_storage())
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and id(
                    leaf.untyped_storage()) not in inputs:
                self.track(leaf)
        return out


@dataclass
class TaskCost:
    """One training iteration of one task on one GPU's batch.

    FLOPs are per part (``backbone``, ``heads``); ``model_flops`` count every
    product once (no recomputation), ``executed_flops`` as the GPU runs them
    (checkpointed blocks recomputed, flash backward's q @ k^T recomputed).
    Memory is in bytes: ``activation_bytes`` is the peak of the tensors the
    iteration creates (saved for backward, temporaries, gradients of
    activations, autocast copies of weights), parameter gradients left out;
    ``head_activation_bytes`` is how far the heads' forward and backward
    raise it above the backbone's saved tensors.
    """
    task_input: TaskInput
    input_shape: Tuple[int, ...]
    model_flops: Dict[str, int]
    executed_flops: Dict[str, int]
    weight_bytes: int
    grad_and_optimizer_bytes: int
    activation_bytes: int
    head_activation_bytes: int
    activation_bytes_without_checkpointing: Optional[int] = None

    @property
    def total_model_flops(self) -> int:
        return sum(self.model_flops.values())

    @property
    def total_executed_flops(self) -> int:
        return sum(self.executed_flops.values())

    @property
    def peak_bytes(self) -> int:
        return (self.weight_bytes + self.grad_and_optimizer_bytes +
                self.activation_bytes)


@dataclass
class CostEstimate:
    """Parameters of the model and the cost of each task's iteration."""
    params_total: int
    params_trainable: int
    autocast_dtype: Optional[torch.dtype]
    checkpointing: bool
    tasks: Dict[str, TaskCost] = field(default_factory=dict)


def build_model_with_fake_backbone(cfg: Config,
                                   fake_mode: FakeTensorMode) -> nn.Module:
    """The config's model without any file: its backbone on fake tensors,
    its task models on CPU with random weights."""
    init_default_scope(cfg.get('default_scope', 'visft_mm'))
    model_cfg = model_config_without_files(cfg.model)
    backbone_cfg = model_cfg.pop('backbone')
    model = MODELS.build(
        dict(model_cfg, backbone=dict(type='visft_mm.FeaturesAsInput')))
    model.tasks.init_weights(
    )  # some heads hold uninitialised memory until then
    with fake_mode:
        model.backbone = MODELS.build(backbone_cfg)
    return model


def gradient_and_optimizer_bytes(optim_wrapper: OptimWrapper) -> int:
    """Bytes of the gradients and Adam/AdamW state of the optimized
    parameters: a gradient and two moments (three with amsgrad) each, in
    the parameter's dtype."""
    optimizer = optim_wrapper.optimizer
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise TypeError(
            f'the cost model counts the state of Adam and AdamW, not of '
            f'{type(optimizer).__name__}')
    total = 0
    for group in optimizer.param_groups:
        copies = 1 + (3 if group.get('amsgrad') else 2)
        total += sum(p.numel() * p.element_size() * copies
                     for p in group['params'] if p.requires_grad)
    return total


@contextlib.contextmanager
def checkpointing_off(module: nn.Module) -> Iterator[None]:
    """Turn off every ``with_cp`` inside ``module`` for the block."""
    switched = [
        m for m in module.modules() if getattr(m, 'with_cp', False) is True
    ]
    for m in switched:
        m.with_cp = False
    try:
        yield
    finally:
        for m in switched:
            m.with_cp = True


def autocast_dtype(optim_wrapper: OptimWrapper) -> Optional[torch.dtype]:
    """The dtype an ``AmpOptimWrapper`` (or subclass) autocasts to; None
    for a wrapper that trains in the parameters' dtype."""
    if not isinstance(optim_wrapper, AmpOptimWrapper):
        return None
    return optim_wrapper.cast_dtype or torch.float16


def _backbone_forward(model, inputs, fake_mode, dtype, modes):
    with torch.autocast('cpu', dtype=dtype,
                        enabled=dtype is not None), fake_mode, \
            contextlib.ExitStack() as stack:
        for mode in modes:
            stack.enter_context(mode)
        return model.backbone(inputs)


def _backbone_backward(feats, fake_mode, modes):
    with fake_mode, contextlib.ExitStack() as stack:
        for mode in modes:
            stack.enter_context(mode)
        torch.autograd.backward(feats, [torch.ones_like(f) for f in feats])


def _heads_iteration(model, task, feats, data_samples, flops, memory) -> int:
    """Loss and backward of the task model on random features of the
    backbone's output shapes, for real, in float32 (CPUs without bf16 units
    emulate bf16 products slowly); returns how far it raises the live bytes."""
    head_feats = [
        torch.randn(f.shape, dtype=f.dtype).requires_grad_(f.requires_grad)
        for f in feats
    ]
    start = memory.open_window()
    with flops.count('heads'), memory:
        losses = model.tasks[task](head_feats, data_samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    return memory.window_peak - start


def _backbone_alone(model, inputs, fake_mode, dtype, flops) -> Tuple[int, int]:
    """The backbone's forward and backward by themselves, FLOPs counted into
    ``flops``; returns the bytes kept for the backward and the peak."""
    memory = LiveTensorBytes()
    memory.track(inputs)
    feats = _backbone_forward(model, inputs, fake_mode, dtype,
                              [flops.count('backbone'), memory])
    saved = memory.live
    _backbone_backward(feats, fake_mode, [flops.count('backbone'), memory])
    return saved, memory.peak


def measure_task(model: nn.Module, optim_wrapper: OptimWrapper,
                 fake_mode: FakeTensorMode, task_input: TaskInput) -> TaskCost:
    """Run one training iteration of ``task_input``'s task (without the
    optimizer step) and count its FLOPs and memory.

    FlopCounterMode's module hooks keep the tensors that checkpointing
    recomputes alive until the backward ends, so with checkpointing on, the
    backbone's FLOPs are counted in passes of their own, away from the
    memory count: one as configured (executed FLOPs) and one without
    checkpointing (model FLOPs, and the activations it would take).
    """
    batch = synthetic_batch(
        task_input,
        vocabulary=caption_vocabulary(model.tasks[task_input.task]))
    data = model.data_preprocessor(batch, training=True)
    inputs = fake_mode.from_tensor(data['inputs'])
    dtype = autocast_dtype(optim_wrapper)
    # Only a backbone that trains recomputes its checkpointed blocks.
    recomputes = (
        any(p.requires_grad for p in model.backbone.parameters()) and any(
            getattr(m, 'with_cp', False) is True
            for m in model.backbone.modules()))
    flops, memory = FlopTally(), LiveTensorBytes()

    def backbone_modes():
        return [memory] if recomputes else [memory, flops.count('backbone')]

    memory.track(inputs)
    with memory.forgetting_gradients(model):
        feats = _backbone_forward(model, inputs, fake_mode, dtype,
                                  backbone_modes())
        head_bytes = _heads_iteration(model, data['task'], feats,
                                      data['data_samples'], flops, memory)
        if any(f.requires_grad for f in feats):
            _backbone_backward(feats, fake_mode, backbone_modes())
        del feats
    model_flops, executed_flops = dict(flops.model), dict(flops.executed)
    without_checkpointing = None
    if recomputes:
        recount = FlopTally()
        _backbone_alone(model, inputs, fake_mode, dtype, recount)
        executed_flops['backbone'] = recount.executed['backbone']
        recount = FlopTally()
        with checkpointing_off(model.backbone):
            saved, peak = _backbone_alone(model, inputs, fake_mode, dtype,
                                          recount)
        model_flops['backbone'] = recount.model['backbone']
        without_checkpointing = max(peak, saved + head_bytes)
    model.zero_grad(set_to_none=True)
    weights = sum(t.numel() * t.element_size()
                  for t in (*model.parameters(), *model.buffers()))
    return TaskCost(
        task_input=task_input,
        input_shape=tuple(data['inputs'].shape),
        model_flops=model_flops,
        executed_flops=executed_flops,
        weight_bytes=weights,
        grad_and_optimizer_bytes=gradient_and_optimizer_bytes(optim_wrapper),
        activation_bytes=memory.peak,
        head_activation_bytes=head_bytes,
        activation_bytes_without_checkpointing=without_checkpointing)


def estimate_cost(cfg: Config,
                  tasks: Optional[Tuple[str, ...]] = None) -> CostEstimate:
    """Build the config's model without files and measure one iteration of
    each task (all of the config's by default) at its per-GPU batch."""
    fake_mode = FakeTensorMode()
    model = build_model_with_fake_backbone(cfg, fake_mode)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    params = list(model.parameters())
    estimate = CostEstimate(
        params_total=sum(p.numel() for p in params),
        params_trainable=sum(p.numel() for p in params if p.requires_grad),
        autocast_dtype=autocast_dtype(optim_wrapper),
        checkpointing=any(
            getattr(m, 'with_cp', False) is True for m in model.modules()))
    for task, task_input in task_inputs(cfg).items():
        if tasks is None or task in tasks:
            estimate.tasks[task] = measure_task(model, optim_wrapper,
                                                fake_mode, task_input)
    return estimate


def projected_seconds(estimate: CostEstimate, ratios: Dict[str, float],
                      max_iters: int, gpus: int, gpu_tflops: float,
                      mfu: float) -> float:
    """Wall time of ``max_iters`` iterations of the recipe's global batch
    (``RECIPE_GPUS`` per-GPU batches; fewer GPUs accumulate, as
    eva_*_stage2_1xb8.py do) on ``gpus`` GPUs that each reach ``mfu`` of
    ``gpu_tflops``; the task of an iteration is drawn by ``ratios``."""
    mean_flops = sum(ratio * estimate.tasks[task].total_model_flops
                     for task, ratio in ratios.items())
    return max_iters * mean_flops * RECIPE_GPUS / gpus / (
        mfu * gpu_tflops * 1e12)
