"""Datasets and transforms of the ViSFT tasks."""
from .caption_vocab import WordVocabulary

__all__ = ['WordVocabulary']
