"""mmdet's detection data preprocessor, padding in pixel values before it
normalises.

The released ViSFT segmentation heads saw images padded with grey 128 before
the ImageNet normalisation (a 1024x1024 crop in training, a multiple of 32 at
test time). mmdet's ``DetDataPreprocessor`` normalises first and pads the
normalised tensor with one value for all channels, and mmdet's ``Pad``
transform rewrites ``img_shape`` (so predicted masks would be cropped to the
padded image). This subclass runs ``DetDataPreprocessor`` without
normalisation, so its ``pad_value`` and the ``img_pad_value`` of its batch
augments are pixel values, then normalises the padded batch.
"""
from typing import Sequence

import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor

from visft_mm.registry import MODELS


@MODELS.register_module()
class PadThenNormalizeDetDataPreprocessor(DetDataPreprocessor):
    """``DetDataPreprocessor`` that pads (``pad_size_divisor``,
    ``batch_augments``) with pixel values and normalises afterwards.

    Args:
        mean: Per-channel pixel mean, in the channel order after
            ``bgr_to_rgb``.
        std: Per-channel pixel standard deviation.
        **kwargs: Other arguments of ``DetDataPreprocessor``; ``pad_value``
            is a pixel value (e.g. 128 for grey).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 **kwargs) -> None:
        super().__init__(mean=None, std=None, **kwargs)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(
                f'mean and std need 3 values each, got {mean} and {std}')
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Pad (and augment) as ``DetDataPreprocessor``, then normalise."""
        data = super().forward(data, training)
        data['inputs'] = (data['inputs'] - self.mean) / self.std
        return data
