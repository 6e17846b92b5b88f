"""Single-task validation that leaves training's random state as it was.

mmengine's ``ValLoop`` runs in training's random state: creating the val
dataloader's iterator alone draws its base seed from torch's global
generator, so every validation shifts the random numbers training draws
next (DINO's denoising noise, augmentations). Validating the demo's stage-1
DINO every 100 iterations moved where it ended. Stage 2's
:class:`~visft_mm.engine.MultiTaskValLoop` forks the state; this loop does the
same for the single-task stage-1 runs, which mmengine's loops drive
otherwise.
"""
from mmengine.runner import ValLoop

from visft_mm.registry import LOOPS
from .multi_task_loops import preserved_random_state


@LOOPS.register_module()
class ForkedRNGValLoop(ValLoop):
    """mmengine's ``ValLoop`` in a forked python, numpy and torch random
    state: training draws the same numbers however often it is validated."""

    def run(self) -> dict:
        with preserved_random_state():
            return super().run()
