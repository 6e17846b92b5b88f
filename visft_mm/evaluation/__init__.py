"""Metrics of the ViSFT tasks (the benchmarks' retrieval metric is in
:mod:`visft_mm.benchmarks`)."""
# registers mmdet's metrics for the visft_mm scope
import mmdet.evaluation  # noqa: F401

from .caption_metric import CaptionMetric

__all__ = ['CaptionMetric']
