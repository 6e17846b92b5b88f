"""Datasets and transforms of the ViSFT tasks."""
from .caption_vocab import WordVocabulary
from .coco_caption import CocoCaptionDataset

__all__ = ['CocoCaptionDataset', 'WordVocabulary']
