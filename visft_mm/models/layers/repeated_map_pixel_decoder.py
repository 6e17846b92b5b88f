"""mmdet's Mask2Former pixel decoder on one map given as two levels: the
layout of the released ViSFT segmentation heads.

The official pixel decoder runs on the single stride-14 ViT map and still
builds one FPN lateral/output conv pair on that same map (it counts
log2(32 / 4) = 3 FPN levels from a declared stride of 32, of which only one
exists): ``mask_features = Conv1x1(ReLU(GN(Conv3x3(GN(Conv1x1(x)) +
encoder(x)))))``. mmdet's ``MSDeformAttnPixelDecoder`` builds exactly that
when the map is its input twice, the last level going through the deformable
encoder and the first through the lateral/output pair. This subclass takes the
one map and passes it on twice; everything else is mmdet's (with
:class:`AnyDeviceMSDeformAttnPixelDecoder`'s any-device attention).
"""
from typing import List, Sequence, Tuple

from torch import Tensor

from visft_mm.registry import MODELS
from .deformable_attention import AnyDeviceMSDeformAttnPixelDecoder


@MODELS.register_module()
class RepeatedMapPixelDecoder(AnyDeviceMSDeformAttnPixelDecoder):
    """Pixel decoder whose one input map is both the encoder level and the
    lateral/output conv level.

    Args:
        in_channels: Channels of the one input map, as a one-item list (what
            ``Mask2FormerHead`` passes on).
        strides: Stride of that map, as a one-item list.
        **kwargs: Arguments of mmdet's ``MSDeformAttnPixelDecoder``; the
            encoder attends one level (``num_levels=1``).
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int],
                 **kwargs) -> None:
        if len(in_channels) != 1 or len(strides) != 1:
            raise ValueError(
                'RepeatedMapPixelDecoder takes one input map, got '
                f'in_channels={list(in_channels)}, strides={list(strides)}')
        super().__init__(
            in_channels=[in_channels[0]] * 2,
            strides=[strides[0]] * 2,
            **kwargs)
        if self.num_encoder_levels != 1:
            raise ValueError(
                'RepeatedMapPixelDecoder needs an encoder on one '
                f'level, got num_levels={self.num_encoder_levels}')

    def forward(self, feats: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """mmdet's forward on ``[feats[0], feats[0]]``."""
        if len(feats) != 1:
            raise ValueError('RepeatedMapPixelDecoder takes one feature map, '
                             f'got {len(feats)}')
        return super().forward([feats[0], feats[0]])
