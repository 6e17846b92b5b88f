"""The modules that stand in for mmcv's compiled kernels where the installed
mmcv has none for the device: the capability check, deformable attention and
focal loss take mmcv's or mmdet's PyTorch code when the kernel cannot run and
the kernel when it can, with the results of mmcv's and mmdet's own modules,
in fp32 and under bf16 autocast."""
from types import SimpleNamespace

import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmdet.models.losses import FocalLoss

from visft_mm.models import (AnyDeviceFocalLoss,
                             AnyDeviceMultiScaleDeformableAttention)
from visft_mm.models.layers import (deformable_attention,
                                    use_any_device_deformable_attention)
from visft_mm.models.losses import focal_loss
from visft_mm.utils import mmcv_kernels

CUDA, CPU = torch.device('cuda'), torch.device('cpu')
PRECISIONS = {
    'fp32': dict(enabled=False),
    'bf16': dict(enabled=True, dtype=torch.bfloat16)
}


@pytest.mark.parametrize('compiling_cuda_version,cuda_served',
                         [('not available', False), ('12.1', True)])
def test_accelerator_kernels_follow_the_mmcv_build(monkeypatch,
                                                   compiling_cuda_version,
                                                   cuda_served):
    monkeypatch.setattr(mmcv_kernels, 'get_compiling_cuda_version',
                        lambda: compiling_cuda_version)
    assert mmcv_kernels.mmcv_has_accelerator_kernels_for(CUDA) is cuda_served
    assert not mmcv_kernels.mmcv_has_accelerator_kernels_for(CPU)


class Recorder:
    """Stands in for a kernel: records its arguments, returns
    ``result_fn``'s result."""

    def __init__(self, result_fn):
        self.result_fn = result_fn
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)
        return self.result_fn(*args)


def deformable_attention_pair(batch_first: bool, num_levels: int):
    """mmcv's attention and ours with the same random (non-initial) weights."""
    cfg = dict(
        embed_dims=32,
        num_heads=4,
        num_levels=num_levels,
        num_points=2,
        batch_first=batch_first,
        dropout=0.0)
    torch.manual_seed(0)
    reference = MultiScaleDeformableAttention(**cfg)
    for param in reference.parameters():
        torch.nn.init.normal_(param, std=0.2)
    ours = AnyDeviceMultiScaleDeformableAttention(**cfg)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def deformable_attention_inputs(batch_first: bool, num_levels: int,
                                box_references: bool):
    spatial_shapes = torch.tensor([[4, 5], [2, 3]][:num_levels])
    sizes = spatial_shapes.prod(-1)
    num_value = int(sizes.sum())
    query = torch.randn(2, num_value, 32) if batch_first else torch.randn(
        num_value, 2, 32)
    padding = torch.zeros(2, num_value, dtype=torch.bool)
    padding[1, -3:] = True
    return dict(
        query=query.requires_grad_(),
        query_pos=torch.randn_like(query),
        key_padding_mask=padding,
        reference_points=torch.rand(2, num_value, num_levels,
                                    4 if box_references else 2),
        spatial_shapes=spatial_shapes,
        level_start_index=torch.cat([sizes.new_zeros(1),
                                     sizes.cumsum(0)[:-1]]))


@pytest.mark.parametrize('precision', sorted(PRECISIONS))
@pytest.mark.parametrize('kernel_available', [False, True])
@pytest.mark.parametrize('batch_first,num_levels,box_references',
                         [(True, 1, False), (False, 2, True)])
def test_deformable_attention_chooses_the_kernel_by_device(
        monkeypatch, kernel_available, precision, batch_first, num_levels,
        box_references):
    compiled = Recorder(
        lambda value, shapes, level_start, locations, weights, step:
        multi_scale_deformable_attn_pytorch(value, shapes, locations, weights))
    pytorch_path = Recorder(multi_scale_deformable_attn_pytorch)
    monkeypatch.setattr(deformable_attention,
                        'mmcv_has_accelerator_kernels_for',
                        lambda device: kernel_available)
    monkeypatch.setattr(deformable_attention,
                        'MultiScaleDeformableAttnFunction',
                        SimpleNamespace(apply=compiled))
    monkeypatch.setattr(deformable_attention,
                        'multi_scale_deformable_attn_pytorch', pytorch_path)
    reference, ours = deformable_attention_pair(batch_first, num_levels)
    inputs = deformable_attention_inputs(batch_first, num_levels,
                                         box_references)

    outputs = []
    for module in (reference,
                   ours):  # reference: mmcv on the CPU, its PyTorch path
        inputs['query'].grad = None
        with torch.autocast('cpu', **PRECISIONS[precision]):
            output = module(**inputs)
        output.float().square().sum().backward()
        outputs.append((output, inputs['query'].grad))

    assert len(compiled.calls) == int(kernel_available)
    assert len(pytorch_path.calls) == int(not kernel_available)
    if kernel_available:
        args = compiled.calls[0]
        torch.testing.assert_close(
            args[2], inputs['level_start_index'], rtol=0, atol=0)
        assert args[5] == ours.im2col_step
    (expected, expected_grad), (output, grad) = outputs
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    assert torch.isfinite(output).all()


def test_switching_to_any_device_attention_keeps_modules_and_keys():
    reference, _ = deformable_attention_pair(batch_first=True, num_levels=1)
    tree = torch.nn.Sequential(reference, torch.nn.Linear(2, 2))
    keys = list(tree.state_dict())
    assert use_any_device_deformable_attention(tree) is tree
    assert type(
        tree[0]
    ) is AnyDeviceMultiScaleDeformableAttention and tree[0] is reference
    assert type(tree[1]) is torch.nn.Linear
    assert list(tree.state_dict()) == keys


@pytest.mark.parametrize('precision', sorted(PRECISIONS))
@pytest.mark.parametrize('kernel_available', [False, True])
def test_focal_loss_leaves_mmdet_its_kernel_only_where_it_runs(
        monkeypatch, kernel_available, precision):
    """mmdet's FocalLoss runs mmcv's kernel for class indices on CUDA and its
    PyTorch loss for one-hot targets anywhere; ours passes indices on only
    where the kernel runs."""
    targets_seen_by_mmdet = []
    mmdet_forward = FocalLoss.forward

    def recording_forward(self, pred, target, *args, **kwargs):
        targets_seen_by_mmdet.append(target)
        return mmdet_forward(self, pred, target, *args, **kwargs)

    monkeypatch.setattr(focal_loss, 'mmcv_has_accelerator_kernels_for',
                        lambda device: kernel_available)
    monkeypatch.setattr(FocalLoss, 'forward', recording_forward)
    torch.manual_seed(0)
    logits = torch.nn.Linear(8, 5)(torch.randn(6, 8))
    labels = torch.tensor([0, 4, 2, 5, 5, 1])  # 5: background
    weights = torch.rand(6)

    with torch.autocast('cpu', **PRECISIONS[precision]):
        expected = FocalLoss(loss_weight=2.0)(
            logits, labels, weights, avg_factor=3.0)
        loss = AnyDeviceFocalLoss(loss_weight=2.0)(
            logits, labels, weights, avg_factor=3.0)

    target = targets_seen_by_mmdet[-1]  # what ours handed on
    if kernel_available:
        torch.testing.assert_close(target, labels, rtol=0, atol=0)
    else:
        assert target.shape == logits.shape
        torch.testing.assert_close(
            target.argmax(-1)[labels < 5], labels[labels < 5])
        assert not target[labels == 5].any()
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    assert torch.isfinite(loss)
