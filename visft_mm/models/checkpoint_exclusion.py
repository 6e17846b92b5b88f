"""Keep frozen weights out of a module's checkpoints, scoped to that module.

The frozen backbone of a ViSFT run (1-4 B parameters) comes from its
``init_cfg``; writing it into every checkpoint wastes disk and time. Unlike
mmpretrain's LoRA hooks, these act only on keys under the module's own prefix,
so no other module's weights are dropped and other missing keys still fail a
strict load.
"""
from typing import List, Optional


class ExcludeFromCheckpoint:
    """Mixin for ``nn.Module``: :meth:`state_dict` leaves out the keys named
    by :meth:`excluded_state_keys`, and :meth:`load_state_dict` accepts a
    checkpoint holding none of them: they come from
    :meth:`init_excluded_weights` (e.g. the backbone's ``init_cfg``), which
    runs first if nothing initialised them yet, as when ``tools/test.py``
    loads a checkpoint without calling ``init_weights``. A checkpoint holding
    only some of them is reported like any other incomplete file. Hooks reach
    the module through their argument, so copies stay correct.
    """

    _load_prefix: Optional[str] = None

    def excluded_state_keys(self) -> List[str]:
        """Keys (relative to this module) to keep out of checkpoints."""
        raise NotImplementedError

    def init_excluded_weights(self) -> None:
        """Give the excluded weights their values unless already done."""
        raise NotImplementedError

    def register_checkpoint_exclusion(self) -> None:
        self._register_state_dict_hook(ExcludeFromCheckpoint._drop_excluded)
        self._register_load_state_dict_pre_hook(
            ExcludeFromCheckpoint._note_load, with_module=True)
        self.register_load_state_dict_post_hook(
            ExcludeFromCheckpoint._accept_absent)

    @staticmethod
    def _drop_excluded(module, state_dict, prefix, local_metadata):
        for key in module.excluded_state_keys():
            state_dict.pop(prefix + key, None)

    @staticmethod
    def _note_load(module, state_dict, prefix, local_metadata, strict,
                   missing_keys, unexpected_keys, error_msgs):
        excluded = module.excluded_state_keys()
        holds_none = excluded and not any(prefix + k in state_dict
                                          for k in excluded)
        module._load_prefix = prefix if holds_none else None
        if holds_none:
            module.init_excluded_weights()

    @staticmethod
    def _accept_absent(module, incompatible_keys):
        prefix, module._load_prefix = module._load_prefix, None
        if prefix is None:
            return
        absent = {prefix + key for key in module.excluded_state_keys()}
        incompatible_keys.missing_keys[:] = [
            k for k in incompatible_keys.missing_keys if k not in absent
        ]
