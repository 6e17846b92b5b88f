"""Distributed start-up on machines without GPUs.

mmengine's ``init_dist`` always calls ``torch.cuda.set_device``, so
``--launcher pytorch`` (torchrun) and ``--launcher slurm`` (srun) fail on
CPU-only machines. Starting the gloo process group first makes the runner
skip its own initialisation. With GPUs, mmengine's ``init_dist`` runs as usual.
"""
import os
import subprocess

import torch
import torch.distributed as dist


def _set_slurm_environment() -> None:
    """The rendezvous variables mmengine's slurm start-up sets from srun's:
    rank, world size, local rank, and the job's first node as master
    (``MASTER_ADDR``/``MASTER_PORT`` where given, else that node and 29500)."""
    if 'MASTER_ADDR' not in os.environ:
        nodes = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1')
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ['SLURM_LOCALID']


def init_cpu_process_group(launcher: str) -> None:
    """With no CUDA, join the torchrun (``pytorch``) or srun (``slurm``) job
    over gloo."""
    if launcher not in ('pytorch', 'slurm') or torch.cuda.is_available() \
            or dist.is_initialized():
        return
    if launcher == 'slurm':
        _set_slurm_environment()
    dist.init_process_group(backend='gloo')
