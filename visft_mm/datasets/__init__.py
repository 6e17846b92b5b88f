"""Datasets and transforms of the ViSFT tasks."""
# registers mmdet's datasets and transforms for the visft_mm scope
import mmdet.datasets  # noqa: F401

from .caption_vocab import WordVocabulary
from .checked_coco import CheckedCocoDataset
from .coco_caption import CocoCaptionDataset
from .seeded_draws import (NumberedInfiniteSampler, SampleDraw,
                           SeedPerDrawDataset)

__all__ = [
    'CheckedCocoDataset', 'CocoCaptionDataset', 'NumberedInfiniteSampler',
    'SampleDraw', 'SeedPerDrawDataset', 'WordVocabulary'
]
