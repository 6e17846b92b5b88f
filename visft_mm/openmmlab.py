"""What other OpenMMLab projects need from visft_mm, set up on import.

* **Checkpoints.** Since torch 2.6, ``torch.load`` reads with the weights-only
  unpickler by default, and mmengine's ``load_checkpoint`` (behind mmdet's
  ``init_detector``, ``DetInferencer`` and ``tools/test.py``, and mmengine's
  resume) calls it without ``weights_only``. A run checkpoint's message hub
  and meta hold ``HistoryBuffer`` objects and numpy arrays, which that
  unpickler refuses. :func:`allow_mmengine_checkpoints` adds exactly those
  types to torch's allow-list; turning the safe loader off
  (``weights_only=False``) would run arbitrary pickled code.
* **Configs.** mmengine resolves a ``pkg::path`` base config only for the
  packages of its own list (``MODULE2PACKAGE``), under the install location
  that ``pkg_resources`` reports, which for an editable install is
  site-packages, where the package is not. :func:`resolve_visft_mm_configs`
  resolves ``visft_mm::path`` under ``.mim/configs`` of the imported
  visft_mm, where the configs ship (a link to ``configs/`` in a checkout,
  copies in a wheel). Adding visft_mm to ``MODULE2PACKAGE`` is not an option:
  mmengine then sends every visft_mm registry without import locations to a
  ``visft_mm.utils.register_all_modules`` that does not exist.

mmengine has no extension point for either, hence this module.
:func:`register_with_openmmlab` runs both when ``visft_mm`` is imported.
"""
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging.history_buffer import HistoryBuffer

CONFIG_PREFIX = 'visft_mm::'
# The configs of the imported visft_mm, where mmengine looks for a package's.
CONFIGS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def _numpy_pickle_types() -> list:
    core = np._core if hasattr(np, '_core') else np.core
    dtype_classes = [
        getattr(np.dtypes, name) for name in dir(np.dtypes)
        if name.endswith('DType')
    ]
    return [
        core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray,
        np.dtype, *dtype_classes
    ]


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine runner checkpoints.

    ``getattr`` is needed because ``HistoryBuffer`` pickles its bound
    statistics methods as ``getattr(buffer, 'mean')``; the weights-only
    unpickler still refuses to call anything not on the allow-list.
    """
    torch.serialization.add_safe_globals(
        [HistoryBuffer, getattr, *_numpy_pickle_types()])


def visft_mm_config_path(cfg_path: str) -> str:
    """The file that ``visft_mm::<path>`` names, checked to exist."""
    path = osp.join(CONFIGS_DIR, cfg_path[len(CONFIG_PREFIX):])
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{cfg_path}: no such config under {CONFIGS_DIR}')
    return path


def resolve_visft_mm_configs() -> None:
    """Make mmengine's ``Config`` resolve ``_base_ = 'visft_mm::<path>'``
    (in the ``visft_mm`` scope, as mmengine scopes ``mmdet::`` bases); every
    other base path goes to mmengine unchanged. Idempotent."""
    resolve = Config._get_cfg_path
    if getattr(resolve, 'resolves_visft_mm', False):
        return

    def get_cfg_path(cfg_path: str,
                     filename: str) -> Tuple[str, Optional[str]]:
        if cfg_path.startswith(CONFIG_PREFIX):
            return visft_mm_config_path(cfg_path), cfg_path.partition('::')[0]
        return resolve(cfg_path, filename)

    get_cfg_path.resolves_visft_mm = True
    Config._get_cfg_path = staticmethod(get_cfg_path)


def register_with_openmmlab() -> None:
    """Everything above: checkpoints open with ``weights_only=True`` and
    ``visft_mm::`` configs resolve."""
    allow_mmengine_checkpoints()
    resolve_visft_mm_configs()
