"""Metrics of the ViSFT tasks."""
import mmdet.evaluation  # noqa: F401  (registers mmdet's metrics for the visft_mm scope)
from .caption_metric import CaptionMetric

__all__ = ['CaptionMetric']
