"""Save the random state in checkpoints and restore it on resume.

mmengine re-seeds a resumed run from its start seed, so dropout masks and
data augmentation after a resume differ from the uninterrupted run. With
this hook (and ``num_workers=0``, whose augmentation draws from the main
process), a run killed and resumed ends with the same weights.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from visft_mm.registry import HOOKS


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Stores python/numpy/torch(/cuda) RNG states under ``checkpoint['random_state']``
    and restores them when training starts after a resume."""

    priority = 'LOWEST'  # restore after every other before_train hook

    def __init__(self) -> None:
        self._resumed_state: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['random_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_state = checkpoint.get('random_state')

    def before_train(self, runner) -> None:
        state, self._resumed_state = self._resumed_state, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
