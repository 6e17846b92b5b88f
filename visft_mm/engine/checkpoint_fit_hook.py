"""Refuse a checkpoint the Runner would load into a model it does not fit.

mmengine's ``Runner.load_checkpoint`` loads non-strictly: a key the model has
no place for (a block it does not have, another task's head) is only logged
and the run goes on. This hook sees the checkpoint before it is loaded and
raises :class:`CheckpointError` naming every surplus key. Missing keys and
other shapes stay warnings of mmengine's: some models take part of their
weights from elsewhere (BLIP-2's OPT from its Hugging Face folder, a frozen
backbone from its ``init_cfg``) or resize a tensor while loading (BEiTViT's
position table).
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from visft_mm.checkpoints.io import (CheckpointError, Misfit, module_misfit,
                                     strip_ddp_prefix)
from visft_mm.registry import HOOKS


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Before the Runner loads ``load_from`` (or resumes), check that every
    key of the checkpoint has a place in the model; the runners of
    ``tools/train.py`` and ``tools/test.py`` have it
    (:func:`visft_mm.utils.cli.build_runner`)."""

    priority = 'VERY_HIGH'  # before other hooks read the checkpoint

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        # What mmengine loads: the 'state_dict' entry (or the whole file),
        # without a DDP 'module.' prefix.
        state_dict = strip_ddp_prefix(checkpoint.get('state_dict', checkpoint))
        surplus = Misfit(
            unexpected=module_misfit(model, state_dict).unexpected)
        if surplus:
            source = runner.cfg.get('load_from') or (
                'the latest checkpoint of the work dir')
            raise CheckpointError(
                f'{source} does not fit the {type(model).__name__} it is '
                f'loaded into: {surplus}')
