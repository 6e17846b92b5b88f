"""ViSFT's official detection head (UniT's DETR variant) as an mmdet DETR.

The released stage-1 detection heads (``eva_{g,e}_detection_heads.ckpt``)
are UniT's DETR on one stride-14 ViT map (reference §4.2). Everything that
mmdet has is mmdet's: the 1x1 input projection is ``ChannelMapper``, the
post-norm encoder and decoder are ``DetrTransformerEncoder`` /
``DetrTransformerDecoder`` (the decoder's norm applied to every intermediate
output), the position encoding is ``SinePositionalEncoding``, and the class
and box branches, Hungarian matching and losses are ``DETRHead``'s.

Written here, because no mmdet module has them:

- :class:`UniTDETR`: a task token (one learned vector, zero position, never
  masked) prepended to the encoder input and dropped from its output; the
  encoder residual ``memory = src + encoder(src)``; and a narrow encoder
  (128) feeding a wide decoder (256) through ``enc2dec_proj`` (memory) and
  ``pos_embed_proj`` (position encoding).
- :class:`UniTDETRHead`: classifier rows indexed by raw COCO category id
  (92 rows: ids 0..90 and no-object 91; ids that are no category are never
  positive but take part in the softmax). Datasets give contiguous labels
  (mmdet's ``cat2label``); the head maps them to rows for the loss and maps
  predicted rows back, so pipelines and ``CocoMetric`` stay unchanged.
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.dense_heads import DETRHead
from mmdet.models.detectors import DETR
from mmdet.structures import OptSampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor

from visft_mm.registry import MODELS

# Raw COCO category ids of mmdet's contiguous labels 0..79 (CocoDataset's
# class order, which is ascending id order).
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18,
                     19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35,
                     36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50,
                     51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
                     65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82,
                     84, 85, 86, 87, 88, 89, 90)


@MODELS.register_module()
class UniTDETR(DETR):
    """mmdet's ``DETR`` with UniT's task token, encoder residual and
    encoder-to-decoder projections.

    The encoder width is the neck's output and ``positional_encoding``'s
    (``2 * num_feats``); the decoder width is the decoder's ``embed_dims``,
    which the queries and both projections take.
    """

    def _init_layers(self) -> None:
        super()._init_layers()
        encoder_dims = self.encoder.embed_dims
        decoder_dims = self.decoder.embed_dims
        self.task_embedding = nn.Embedding(1, encoder_dims)
        self.enc2dec_proj = nn.Linear(encoder_dims, decoder_dims)
        self.pos_embed_proj = nn.Linear(encoder_dims, decoder_dims)
        self.query_embedding = nn.Embedding(self.num_queries, decoder_dims)

    def init_weights(self) -> None:
        """As DETR, with the projections initialised as the transformer."""
        super().init_weights()
        for proj in (self.enc2dec_proj, self.pos_embed_proj):
            nn.init.xavier_uniform_(proj.weight)

    def pre_transformer(
            self,
            img_feats: Tuple[Tensor],
            batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """DETR's inputs, with the memory's position encoding projected to
        the decoder width."""
        encoder_inputs, decoder_inputs = super().pre_transformer(
            img_feats, batch_data_samples)
        decoder_inputs['memory_pos'] = self.pos_embed_proj(
            decoder_inputs['memory_pos'])
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat: Tensor, feat_mask: Tensor,
                        feat_pos: Tensor) -> Dict:
        """Encode ``[task token, feat]``, drop the token, add ``feat`` back
        and project to the decoder width."""
        batch_size = feat.size(0)
        token = self.task_embedding.weight.expand(batch_size, 1, -1)
        query = torch.cat([token, feat], dim=1)
        query_pos = torch.cat([torch.zeros_like(feat_pos[:, :1]), feat_pos],
                              dim=1)
        if feat_mask is not None:
            feat_mask = torch.cat(
                [feat_mask.new_zeros(batch_size, 1), feat_mask], dim=1)
        encoded = self.encoder(
            query=query, query_pos=query_pos, key_padding_mask=feat_mask)
        memory = self.enc2dec_proj(feat + encoded[:, 1:])
        return dict(memory=memory)


@MODELS.register_module()
class UniTDETRHead(DETRHead):
    """``DETRHead`` whose classifier rows are raw category ids.

    Args:
        category_ids: The raw id (classifier row) of each contiguous label,
            in label order. Defaults to COCO's 80 categories.
        num_classes: Classifier rows before no-object (91 for COCO: ids
            0..90); ``category_ids`` must lie below it.
        test_cfg: ``DETRHead``'s (``max_per_img``), plus
            ``official_inference``. False (default): per query the best of
            the ``category_ids`` rows, the ``max_per_img`` best queries kept.
            True: the official post-processing, per query the best row other
            than no-object, every query kept and boxes not clipped to the
            image; queries whose best row is no category are then dropped
            (COCO evaluation of the official results ignores them as well).
        **kwargs: ``DETRHead``'s. ``loss_cls.bg_cls_weight`` is the weight
            of no-object in the cross-entropy, as in ``DETRHead``.
    """

    def __init__(self,
                 category_ids: Sequence[int] = COCO_CATEGORY_IDS,
                 num_classes: int = 91,
                 loss_cls: dict = dict(
                     type='CrossEntropyLoss',
                     bg_cls_weight=0.1,
                     use_sigmoid=False,
                     loss_weight=1.0,
                     class_weight=1.0),
                 **kwargs) -> None:
        rows = torch.as_tensor(list(category_ids), dtype=torch.long)
        if (rows.numel() == 0 or len(set(rows.tolist())) != rows.numel()
                or rows.min() < 0 or rows.max() >= num_classes):
            raise ValueError(
                f'category_ids must be distinct ids in [0, {num_classes}), '
                f'got {list(category_ids)}')
        # DETRHead turns bg_cls_weight into class weights only for its own
        # class, not for subclasses: do it here.
        loss_cls = dict(loss_cls)
        bg_cls_weight = loss_cls.pop('bg_cls_weight', None)
        if bg_cls_weight is not None:
            loss_cls['class_weight'] = [
                float(loss_cls.get('class_weight', 1.0))
            ] * num_classes + [float(bg_cls_weight)]
        super().__init__(num_classes=num_classes, loss_cls=loss_cls, **kwargs)
        self.bg_cls_weight = bg_cls_weight or 0
        label_of_row = torch.full((num_classes + 1, ), -1, dtype=torch.long)
        label_of_row[rows] = torch.arange(rows.numel())
        self.register_buffer('category_rows', rows, persistent=False)
        self.register_buffer('label_of_row', label_of_row, persistent=False)

    def labels_to_rows(self, labels: Tensor) -> Tensor:
        """Classifier rows (raw ids) of contiguous labels."""
        return self.category_rows.to(labels.device)[labels]

    def rows_to_labels(self, rows: Tensor) -> Tensor:
        """Contiguous labels of classifier rows; -1 for no category."""
        return self.label_of_row.to(rows.device)[rows]

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     batch_gt_instances: Sequence[InstanceData],
                     batch_img_metas: Sequence[dict],
                     batch_gt_instances_ignore=None) -> Dict[str, Tensor]:
        """``DETRHead``'s losses on targets whose labels are rows."""
        as_rows = [
            gt.new(bboxes=gt.bboxes, labels=self.labels_to_rows(gt.labels))
            for gt in batch_gt_instances
        ]
        return super().loss_by_feat(all_layers_cls_scores,
                                    all_layers_bbox_preds, as_rows,
                                    batch_img_metas, batch_gt_instances_ignore)

    def _predict_by_feat_single(self,
                                cls_score: Tensor,
                                bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """Scores, contiguous labels and xyxy boxes of one image (see
        ``test_cfg`` in the class docstring)."""
        probs = F.softmax(cls_score, dim=-1)
        official = self.test_cfg.get('official_inference', False)
        if official:
            scores, rows = probs[:, :-1].max(-1)
            labels = self.rows_to_labels(rows)
            queries = torch.nonzero(labels >= 0).squeeze(1)
        else:
            scores, labels = probs[:, self.category_rows].max(-1)
            max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
            queries = scores.topk(min(max_per_img, len(scores)))[1]
        img_h, img_w = img_meta['img_shape']
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred[queries])
        bboxes[:, 0::2] *= img_w
        bboxes[:, 1::2] *= img_h
        if not official:  # the official boxes may cross the image border
            bboxes[:, 0::2].clamp_(min=0, max=img_w)
            bboxes[:, 1::2].clamp_(min=0, max=img_h)
        if rescale:
            bboxes /= bboxes.new_tensor(img_meta['scale_factor']).repeat(
                (1, 2))
        return InstanceData(
            bboxes=bboxes, scores=scores[queries], labels=labels[queries])
