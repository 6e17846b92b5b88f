"""Data preprocessors that mmdet/mmengine do not provide."""
from .pad_then_normalize import PadThenNormalizeDetDataPreprocessor

__all__ = ['PadThenNormalizeDetDataPreprocessor']
