"""The caption task model of ViSFT: backbone → Show-Attend-Tell head.

Hand-written because no OpenMMLab model pairs a backbone with an LSTM caption
head; it has the structure of an mmdet detector (``backbone``, ``head``,
``data_preprocessor``, ``extract_feat``/``loss``/``predict``), so with the
default :class:`FeaturesAsInput` backbone it is fed the shared ViT's features
exactly as the detection and segmentation models are.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample

from visft_mm.registry import MODELS


@MODELS.register_module()
class ImageCaptioner(BaseModel):
    """Caption model: ``head(backbone(inputs))``.

    Args:
        head: Config of the caption head (a ``ShowAttendTellHead``).
        backbone: Config of the backbone; by default ``FeaturesAsInput``,
            whose inputs are the shared backbone's feature maps. A ViT config
            here gives a stand-alone captioner that takes images.
        data_preprocessor: Config of the data preprocessor, e.g.
            ``dict(type='ImgDataPreprocessor', mean=..., std=...,
            bgr_to_rgb=True)``; mmengine's ``BaseDataPreprocessor`` by default.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 head: dict,
                 backbone: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # Scoped, so the default also resolves when another scope is the
        # default one.
        self.backbone = MODELS.build(
            backbone or dict(type='visft_mm.FeaturesAsInput'))
        self.head = MODELS.build(head)

    def extract_feat(
        self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> Tuple[torch.Tensor, ...]:
        """The feature maps the head reads: ``self.backbone(inputs)``."""
        return self.backbone(inputs)

    def loss(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Head losses for the samples' ``gt_caption``."""
        return self.head.loss(self.extract_feat(inputs), data_samples)

    def predict(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                data_samples: List[DataSample]) -> List[DataSample]:
        """The samples with ``pred_caption`` set by the head's beam search."""
        return self.head.predict(self.extract_feat(inputs), data_samples)

    def forward(
        self,
        inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
        data_samples: Optional[List[DataSample]] = None,
        mode: str = 'tensor'
    ) -> Union[Dict[str, torch.Tensor], List[DataSample], Tuple[torch.Tensor,
                                                                torch.Tensor]]:
        """mmengine's entry point: ``'loss'`` → dict of losses, ``'predict'``
        → samples with ``pred_caption``, ``'tensor'`` → the head's raw output
        on the ground-truth captions (teacher forcing): next-word logits
        (B, T-1, V) and attention weights (B, T-1, P). The head has no output
        without a caption to read, so every mode needs ``data_samples``."""
        if data_samples is None:
            raise ValueError('ImageCaptioner needs data_samples in every mode')
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            feats = self.extract_feat(inputs)
            captions, _ = self.head.encode_captions(data_samples,
                                                    feats[-1].device)
            return self.head(feats, captions)
        raise RuntimeError(
            f'invalid mode {mode!r}; expected loss, predict or tensor')
