"""Metrics of the ViSFT tasks and of the out-of-domain benchmarks."""
# registers mmdet's metrics for the visft_mm scope
import mmdet.evaluation  # noqa: F401

from .caption_metric import CaptionMetric
from .retrieval_metric import Numpy2RetrievalRecall

__all__ = ['CaptionMetric', 'Numpy2RetrievalRecall']
