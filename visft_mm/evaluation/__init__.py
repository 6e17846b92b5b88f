"""Metrics of the ViSFT tasks."""
from .caption_metric import CaptionMetric

__all__ = ['CaptionMetric']
