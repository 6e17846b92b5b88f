"""Augmentation that a resumed run repeats exactly, with or without workers.

A data worker seeds its random generators once, when it starts, and then
augments every sample it loads from that one stream. After a resume the
workers start over, and batches go to other workers, so the augmentation
differs from the uninterrupted run even though the sampler restores the data
order. Here each draw of a sample is numbered by its position in the
sampler's stream, and loading it seeds python's, numpy's and torch's
generators from (seed, draw, index): a draw's augmentation no longer depends
on which process loads it, or when.

mmengine's samplers yield bare indices, which carry no position, so both
halves are written here: ``NumberedInfiniteSampler`` is mmengine's
``InfiniteSampler`` yielding ``SampleDraw``s, and ``SeedPerDrawDataset``
wraps any dataset (as mmengine's ``RepeatDataset`` does) to load each draw
under its own seed.
"""
import contextlib
import itertools
import random
from typing import Iterator, NamedTuple, Optional, Sized, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset, InfiniteSampler

from visft_mm.engine.multi_task_loops import preserved_random_state
from visft_mm.registry import DATA_SAMPLERS, DATASETS


class SampleDraw(NamedTuple):
    """One draw of a sample: its dataset index, the sampler's seed and the
    draw's position in the stream of all ranks."""
    index: int
    seed: int
    draw: int

    def augmentation_seed(self) -> int:
        """A 32-bit seed (numpy's limit) mixed from (seed, draw, index)."""
        entropy = [self.seed, self.draw, self.index]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@contextlib.contextmanager
def seeded_random_state(seed: int):
    """Run a block with python, numpy and torch seeded by ``seed``, and
    leave the generators as they were before it."""
    with preserved_random_state():
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        yield


@DATASETS.register_module()
class SeedPerDrawDataset:
    """Loads each ``SampleDraw`` of ``dataset`` under the draw's own seed.

    Args:
        dataset: The dataset (or its config) whose pipeline augments.

    Read by ``NumberedInfiniteSampler``, which yields the draws; a bare index
    is refused, since it would augment from the process's random state.
    """

    def __init__(self, dataset: Union[BaseDataset, dict]) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset,
                                                             dict) else dataset

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, draw: SampleDraw) -> dict:
        if not isinstance(draw, SampleDraw):
            raise TypeError(
                f'SeedPerDrawDataset loads SampleDraws of '
                f'NumberedInfiniteSampler, got {type(draw).__name__} {draw!r}')
        with seeded_random_state(draw.augmentation_seed()):
            return self.dataset[draw.index]


@DATA_SAMPLERS.register_module()
class NumberedInfiniteSampler(InfiniteSampler):
    """mmengine's ``InfiniteSampler``, yielding each index as a
    ``SampleDraw`` numbered by its position in the stream of all ranks.

    The stream and its split between ranks are ``InfiniteSampler``'s, so the
    data order is the same, and skipping ``n`` items on resume skips the same
    ``n`` draws.
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None) -> None:
        if not isinstance(dataset, SeedPerDrawDataset):
            raise TypeError(
                'NumberedInfiniteSampler needs its dataset wrapped in '
                f"dict(type='SeedPerDrawDataset', dataset=...), got "
                f'{type(dataset).__name__}')
        super().__init__(dataset, shuffle=shuffle, seed=seed)

    def _indices_of_rank(self) -> Iterator[SampleDraw]:
        draws = enumerate(self._infinite_indices())
        for draw, index in itertools.islice(draws, self.rank, None,
                                            self.world_size):
            yield SampleDraw(index, self.seed, draw)
