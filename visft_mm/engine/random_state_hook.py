"""Save the random state in checkpoints and restore it on resume.

mmengine re-seeds a resumed run from its start seed, so dropout masks and
data augmentation after a resume differ from the uninterrupted run. With
this hook a run killed and resumed ends with the same weights, provided
augmentation is exact too: drawn in the main process (``num_workers=0``),
or per draw by ``SeedPerDrawDataset`` with ``NumberedInfiniteSampler``
(what the stage configs use), since data workers restart their random
streams on resume.
"""
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from visft_mm.registry import HOOKS


def loaders_augmenting_anew(runner) -> list:
    """Names of the train loaders whose workers augment from their own
    random streams, which a resume restarts."""
    # imported here: visft_mm.datasets imports visft_mm.engine
    from visft_mm.datasets import SeedPerDrawDataset
    loop = runner.train_loop
    loaders = getattr(loop, 'task_dataloaders',
                      None) or dict(train=loop.dataloader)
    return [
        name for name, loader in loaders.items() if loader.num_workers > 0
        and not isinstance(loader.dataset, SeedPerDrawDataset)
    ]


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Stores python/numpy/torch(/cuda) RNG states under
    ``checkpoint['random_state']`` and restores them when training starts
    after a resume."""

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
        inexact = loaders_augmenting_anew(runner)
        if inexact:
            print_log(
                f'Resumed with data workers in the train loaders {inexact}, '
                'whose augmentation differs from the uninterrupted run: '
                'wrap their datasets in SeedPerDrawDataset and sample with '
                'NumberedInfiniteSampler to resume it exactly',
                logger='current',
                level=logging.WARNING)
