"""Datasets and transforms of the ViSFT tasks."""
import mmdet.datasets  # noqa: F401  (registers mmdet's datasets and transforms for the visft_mm scope)
from .caption_vocab import WordVocabulary
from .coco_caption import CocoCaptionDataset

__all__ = ['CocoCaptionDataset', 'WordVocabulary']
