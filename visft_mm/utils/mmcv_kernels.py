"""Where the installed mmcv's compiled accelerator kernels can run.

tools/misc/install_env.sh builds mmcv with CPU ops only, also on GPU machines
(``VISFT_MMCV_CUDA_OPS=1`` adds the CUDA kernels). mmcv and mmdet still call a
compiled kernel for every CUDA tensor in a few places; the visft_mm modules
that replace those places ask this function first.
"""
import torch
from mmcv.ops import get_compiling_cuda_version
from mmcv.utils import IS_MLU_AVAILABLE


def mmcv_has_accelerator_kernels_for(device: torch.device) -> bool:
    """Whether mmcv's compiled accelerator kernels run on ``device``.

    CUDA (and ROCm, also ``'cuda'`` in torch) devices need an mmcv built with
    them: a CPU-ops build reports its compiling CUDA version as
    ``'not available'``. MLU devices follow mmcv's own test. The CPU has no
    accelerator kernels: mmcv and mmdet run PyTorch code there.
    """
    if device.type == 'cuda':
        return get_compiling_cuda_version() != 'not available'
    return device.type == 'mlu' and IS_MLU_AVAILABLE
