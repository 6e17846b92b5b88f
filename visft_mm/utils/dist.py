"""Distributed start-up on machines without GPUs.

mmengine's ``init_dist('pytorch')`` always calls ``torch.cuda.set_device``,
so ``--launcher pytorch`` fails on CPU-only machines. Starting the gloo
process group first makes the runner skip its own initialisation.
"""
import torch
import torch.distributed as dist


def init_cpu_process_group(launcher: str) -> None:
    """With ``launcher='pytorch'`` and no CUDA, join the torchrun group over gloo."""
    if launcher == 'pytorch' and not torch.cuda.is_available() and not dist.is_initialized():
        dist.init_process_group(backend='gloo')
