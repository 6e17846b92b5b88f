"""mmpretrain's retrieval Recall@k, made to run on numpy 2.

mmpretrain 1.2.0's ``RetrievalRecall.calculate`` calls ``np.in1d``, which
numpy 2.4 removed (``np.isin`` replaces it), and its ``process`` calls
``RetrievalRecall.calculate`` by class name, so both are overridden here;
everything else is mmpretrain's. Its own class name keeps ``RetrievalRecall``
meaning mmpretrain's metric alone.
"""
from typing import Sequence, Union

import numpy as np
import torch
from mmpretrain.evaluation.metrics import RetrievalRecall
from mmpretrain.evaluation.metrics.retrieval import (_format_pred,
                                                     _format_target)
from mmpretrain.evaluation.metrics.single_label import to_tensor
from mmpretrain.structures import label_to_onehot

from visft_mm.registry import METRICS


@METRICS.register_module()
class Numpy2RetrievalRecall(RetrievalRecall):
    """mmpretrain's ``RetrievalRecall`` (same arguments and metric names,
    ``retrieval/Recall@k`` in percent) with ``np.isin`` for ``np.in1d``."""

    def process(self, data_batch, data_samples: Sequence[dict]):
        for data_sample in data_samples:
            pred_score = data_sample['pred_score'].clone()
            if 'gt_score' in data_sample:
                target = data_sample['gt_score'].clone()
            else:
                target = label_to_onehot(data_sample['gt_label'],
                                         pred_score.size(-1))
            self.results.append(
                self.calculate(
                    pred_score.unsqueeze(0),
                    target.unsqueeze(0),
                    topk=self.topk))

    @staticmethod
    def calculate(pred: Union[np.ndarray, torch.Tensor, Sequence],
                  target: Union[np.ndarray, torch.Tensor, Sequence],
                  topk: Union[int, Sequence[int]],
                  pred_indices: bool = False,
                  target_indices: bool = False) -> list:
        """Recall@k in percent for each k of ``topk``: the share of rows whose
        k best predictions hold at least one target (see mmpretrain's)."""
        topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if any(k <= 0 for k in topk):
            raise ValueError(
                f'topk must hold integers larger than 0, got {topk}')
        pred = _format_pred(pred, max(topk), pred_indices)
        target = _format_target(target, target_indices)
        if len(pred) != len(target):
            raise ValueError(
                f'{len(pred)} predictions but {len(target)} targets')
        results = []
        for k in topk:
            hits = torch.tensor([
                bool(
                    np.isin(
                        to_tensor(sample_pred[:k]).cpu().numpy(),
                        to_tensor(sample_target).cpu().numpy()).any())
                for sample_pred, sample_target in zip(pred, target)
            ],
                                dtype=torch.float32)
            results.append(hits.mean() * 100)
        return results
