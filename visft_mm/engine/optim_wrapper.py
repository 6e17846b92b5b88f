"""Mixed-precision training on every device torch.autocast supports, CPU
included.

Written here because mmengine's ``AmpOptimWrapper`` refuses to be built
without a GPU/NPU/MLU and its ``autocast`` allows only bfloat16 on CPU, so a
config that trains in bf16 on GPUs could not run its own optimizer path on a
CPU machine (or in the test suite). bfloat16 keeps float32's exponent range
and needs no loss scaling; float16 gets torch's ``GradScaler`` for the device.
"""
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from visft_mm.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that runs wherever ``torch.autocast`` does.

    Args:
        dtype: Autocast dtype, ``'bfloat16'`` (default) or ``'float16'``.
        loss_scale: As ``AmpOptimWrapper``; float16 only, since bfloat16
            runs without a loss scaler.
        device_type: Autocast device type; by default mmengine's current
            device (``'cuda'``, ``'cpu'``, ...).
        **kwargs: Passed to ``OptimWrapper`` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 device_type: str = None,
                 **kwargs):
        # AmpOptimWrapper.__init__ only adds the device assertion and a CUDA
        # scaler.
        OptimWrapper.__init__(self, **kwargs)
        if isinstance(dtype, str):
            if dtype not in ('bfloat16', 'float16'):
                raise ValueError(
                    f"dtype must be 'bfloat16' or 'float16', got {dtype!r}")
            dtype = getattr(torch, dtype)
        self.cast_dtype = dtype
        self.device_type = device_type or get_device()
        self._scale_update_param = None
        self.loss_scaler = None
        if dtype == torch.float16:
            if loss_scale == 'dynamic':
                self.loss_scaler = torch.amp.GradScaler(self.device_type)
            elif isinstance(loss_scale, float):
                self._scale_update_param = loss_scale
                self.loss_scaler = torch.amp.GradScaler(
                    self.device_type, init_scale=loss_scale)
            elif isinstance(loss_scale, dict):
                self.loss_scaler = torch.amp.GradScaler(
                    self.device_type, **loss_scale)
            else:
                raise TypeError(
                    f"loss_scale must be 'dynamic', a float or a dict, got "
                    f'{loss_scale!r}')

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            # a float16 or mmengine AmpOptimWrapper checkpoint resumes in
            # bfloat16
            state_dict = {
                k: v
                for k, v in state_dict.items() if k != 'loss_scaler'
            }
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        with OptimWrapper.optim_context(self, model), torch.autocast(
                device_type=self.device_type, dtype=self.cast_dtype):
            yield
