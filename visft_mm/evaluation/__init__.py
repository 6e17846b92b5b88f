"""Metrics of the ViSFT tasks and of the out-of-domain benchmarks."""
import mmdet.evaluation  # noqa: F401  (registers mmdet's metrics for the visft_mm scope)

from .caption_metric import CaptionMetric
from .retrieval_metric import RetrievalRecall

__all__ = ['CaptionMetric', 'RetrievalRecall']
