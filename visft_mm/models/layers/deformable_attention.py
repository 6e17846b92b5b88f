"""mmcv's multi-scale deformable attention on any device, and mmdet's pixel
decoder built with it.

mmcv's ``MultiScaleDeformableAttention`` calls its compiled kernel for every
CUDA tensor, so with an mmcv built with CPU ops only (what
tools/misc/install_env.sh builds, also on GPU machines) Mask2Former's pixel
decoder and DINO fail on a GPU. ``AnyDeviceMultiScaleDeformableAttention``
takes mmcv's PyTorch path (``multi_scale_deformable_attn_pytorch``) wherever
the compiled kernel cannot run, and the kernel otherwise. mmcv makes that
choice inside ``forward``, with no hook, so ``forward`` is written again here
with only the choice changed; parameters and initialisation are mmcv's.

mmdet's encoder and decoder layers build mmcv's class directly, not through a
registry, so ``use_any_device_deformable_attention`` switches the attention
modules of a built tree to the subclass in place. The subclass adds no
parameters or buffers: state-dict keys stay the same and existing checkpoints
load.
"""
from typing import Optional

import torch.nn as nn
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
from mmdet.models.layers import MSDeformAttnPixelDecoder
from torch import Tensor

from visft_mm.registry import MODELS
from visft_mm.utils.mmcv_kernels import mmcv_has_accelerator_kernels_for


@MODELS.register_module()
class AnyDeviceMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` that uses the compiled kernel
    only where mmcv has one for the tensors' device."""

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """mmcv's forward: same arguments, same result."""
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)

        bs, num_query, _ = query.shape
        _, num_value, _ = value.shape
        assert (spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum() == num_value

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_value, self.num_heads, -1)
        sampling_offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2)
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads,
            self.num_levels * self.num_points).softmax(-1)
        attention_weights = attention_weights.view(bs, num_query,
                                                   self.num_heads,
                                                   self.num_levels,
                                                   self.num_points)

        if reference_points.shape[
                -1] == 2:  # points: offsets are in cells of each level
            offset_normalizer = spatial_shapes.flip(-1)[None, None, None, :,
                                                        None, :]
            sampling_locations = (
                reference_points[:, :, None, :, None, :] +
                sampling_offsets / offset_normalizer)
        elif reference_points.shape[
                -1] == 4:  # boxes: offsets scale with the box size
            sampling_locations = (
                reference_points[:, :, None, :, None, :2] +
                sampling_offsets / self.num_points *
                reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(
                'Last dim of reference_points must be 2 or 4, but get '
                f'{reference_points.shape[-1]} instead.')

        if mmcv_has_accelerator_kernels_for(value.device):
            output = MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights, self.im2col_step)
        else:
            output = multi_scale_deformable_attn_pytorch(
                value, spatial_shapes, sampling_locations, attention_weights)

        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity


def use_any_device_deformable_attention(module: nn.Module) -> nn.Module:
    """Switches every mmcv ``MultiScaleDeformableAttention`` inside ``module``
    to ``AnyDeviceMultiScaleDeformableAttention`` in place; returns
    ``module``."""
    for submodule in module.modules():
        if type(submodule) is MultiScaleDeformableAttention:
            submodule.__class__ = AnyDeviceMultiScaleDeformableAttention
    return module


@MODELS.register_module()
class AnyDeviceMSDeformAttnPixelDecoder(MSDeformAttnPixelDecoder):
    """mmdet's ``MSDeformAttnPixelDecoder`` (Mask2Former) whose encoder
    attention runs on any device; same arguments and state dict."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        use_any_device_deformable_attention(self.encoder)
