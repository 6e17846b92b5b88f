"""mmdet's Mask2Former head with the class rows of the released ViSFT heads.

The official ViSFT label mapping sends COCO's 80 categories to 1..80 while its
81-way classifier keeps row 80 for no-object: row 0 is never a positive, rows
1..79 are mmdet's contiguous classes 0..78, and row 80 is both no-object and
the last class (toothbrush), which is thus trained as background. A frozen
released head gets the gradients it was trained with only from targets in
that layout, so this head shifts every ground-truth label up by one before
matching (the last class lands on the no-object row, matched and with a mask
loss, as in the official criterion). Predictions are mapped back to mmdet's
classes (row k -> class k-1) so that metrics count standard COCO categories:
row 0's probability joins no-object and the last class is never predicted.

Hand-written because mmdet has no label offset; everything else is mmdet's
``Mask2FormerHead``.
"""
from typing import List, Optional, Tuple

import torch
from mmdet.models.dense_heads import Mask2FormerHead
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from visft_mm.registry import MODELS

LABEL_SHIFT = 1


def shift_labels_to_rows(labels: Tensor) -> Tensor:
    """mmdet class indices 0..N-1 -> rows of the official classifier."""
    return labels + LABEL_SHIFT


def rows_to_class_logits(row_logits: Tensor) -> Tensor:
    """Official row logits (..., N+1) -> mmdet's layout (..., N+1): classes
    0..N-2 from rows 1..N-1, class N-1 impossible (-inf), no-object from rows
    0 and N together (log-sum-exp), so every softmax probability is kept."""
    no_object = torch.logsumexp(row_logits[..., [0, -1]], dim=-1, keepdim=True)
    last_class = torch.full_like(no_object, float('-inf'))
    return torch.cat([row_logits[..., 1:-1], last_class, no_object], dim=-1)


@MODELS.register_module()
class ShiftedLabelMask2FormerHead(Mask2FormerHead):
    """``Mask2FormerHead`` (instance segmentation only) that trains and
    predicts with the official ViSFT class rows; same arguments and state
    dict."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.num_stuff_classes:
            raise ValueError('ShiftedLabelMask2FormerHead is for instance '
                             'segmentation: num_stuff_classes must be 0, got '
                             f'{self.num_stuff_classes}')

    def preprocess_gt(
        self, batch_gt_instances: List[InstanceData],
        batch_gt_semantic_segs: List[Optional[PixelData]]
    ) -> List[InstanceData]:
        """mmdet's targets with every label moved to its official row."""
        targets = super().preprocess_gt(batch_gt_instances,
                                        batch_gt_semantic_segs)
        for target in targets:
            target.labels = shift_labels_to_rows(target.labels)
        return targets

    def predict(self, x: Tuple[Tensor],
                batch_data_samples: list) -> Tuple[Tensor, Tensor]:
        """mmdet's class and mask logits, the class logits in mmdet's class
        layout (see :func:`rows_to_class_logits`)."""
        row_logits, mask_logits = super().predict(x, batch_data_samples)
        return rows_to_class_logits(row_logits), mask_logits
