"""The cost model: input sizes read from the configs, backbone FLOPs equal to a
count by hand, memory split, and the lines
tools/analysis_tools/estimate_cost.py ends with."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from tiny import TINY_VIT, run_script

from visft_mm.analysis import estimate_cost, task_inputs
from visft_mm.analysis.cost_model import LiveTensorBytes

ROOT = Path(__file__).resolve().parents[1]
PATCH = 14
RANK = 64  # the demo stage-2 LoRA rank
TOKENS = (112 // PATCH)**2  # demo images are 112 pixels


@pytest.fixture(scope='module')
def tiny_stage2(tmp_path_factory) -> Path:
    """Demo stage 2 with a tiny checkpointed ViT and small batches."""
    path = tmp_path_factory.mktemp('configs') / 'tiny_stage2.py'
    width = TINY_VIT['embed_dims']
    path.write_text(f"""
_base_ = ['{ROOT}/configs/visft/demo/demo_stage2.py']
model = dict(
    backbone=dict(module=dict(module=dict(arch={TINY_VIT}, with_cp=True))),
    tasks=dict(caption=dict(head=dict(in_channels={width})),
               segmentation=dict(panoptic_head=dict(in_channels=[{width}])),
               detection=dict(neck=dict(in_channels=[{width}]))))
train_dataloader = dict(caption=dict(batch_size=2),
                        segmentation=dict(batch_size=1),
                        detection=dict(batch_size=1))
""")
    return path


def tiny_vit_flops(batch: int) -> dict:
    """FLOPs of the tiny LoRA ViT by hand, 2*M*N*K per matrix product.

    Forward: the patch convolution, then per block the frozen qkv, proj, fc1
    and fc2, attention's q @ k^T and attn @ v (all heads: 2*2*B*N*N*C), and
    LoRA (x @ A^T to 2r, then hidden @ B^T for each of q and v). Backward
    (only LoRA trains, the image needs no gradient): input gradients of the
    frozen layers, four attention products, and LoRA's gradients of hidden,
    B and A; block 0's input needs no gradient, so its qkv and A give none.
    Executed adds the checkpointed blocks' second forward and the q @ k^T
    that flash-attention backward recomputes. torch stops recomputing at the
    last tensor the backward needs: in these pre-norm blocks that is fc1's
    output (GELU's input), so fc2's product is not run again.
    """
    C, F, L = TINY_VIT['embed_dims'], TINY_VIT[
        'feedforward_channels'], TINY_VIT['num_layers']
    T = batch * TOKENS
    patch = 2 * T * C * 3 * PATCH * PATCH
    linear = 2 * T * (3 * C * C + C * C + C * F + F * C)
    attention = 2 * (2 * batch * TOKENS * TOKENS * C)
    lora = 2 * T * C * 2 * RANK + 2 * (2 * T * RANK * C)
    block = linear + attention + lora
    block0_backward = (2 * T * (C * C + C * F + F * C) + 2 * attention + 2 *
                       (2 * 2 * T * C * RANK) + 2 * T * 2 * RANK * C)
    later_backward = block0_backward + 2 * T * 3 * C * C + 2 * T * 2 * RANK * C
    model = patch + L * block + block0_backward + (L - 1) * later_backward
    fc2 = 2 * T * F * C
    return dict(
        forward=patch + L * block,
        model=model,
        executed=model + L * (block - fc2) + L * attention // 2)


def test_paper_configs_give_the_paper_sizes():
    sizes = {}
    for name in ('eva_4b_stage2', 'eva_1b_stage1_caption_8xb32-100k_coco'):
        for task, given in task_inputs(
                Config.fromfile(ROOT / f'configs/visft/{name}.py')).items():
            sizes[name, task] = (given.batch_size, given.image_shape,
                                 given.with_masks, given.with_captions)
    assert sizes == {
        ('eva_4b_stage2', 'caption'): (8, (256, 256), False, True),
        ('eva_4b_stage2', 'segmentation'): (1, (1024, 1024), True, False),
        ('eva_4b_stage2', 'detection'): (1, (672, 672), False, False),
        ('eva_1b_stage1_caption_8xb32-100k_coco', 'caption'):
        (32, (256, 256), False, True),
    }


def test_backbone_flops_and_memory_split_of_stage2(tiny_stage2):
    estimate = estimate_cost(Config.fromfile(tiny_stage2))
    assert estimate.checkpointing and estimate.autocast_dtype is None
    # LoRA A (2r, C) and B (2C, r) in every block
    lora_params = TINY_VIT['num_layers'] * 4 * RANK * TINY_VIT['embed_dims']
    assert estimate.params_trainable == lora_params
    for task, batch in dict(caption=2, segmentation=1, detection=1).items():
        cost = estimate.tasks[task]
        assert cost.input_shape == (batch, 3, 112, 112)
        hand = tiny_vit_flops(batch)
        assert cost.model_flops['backbone'] == hand['model']
        assert cost.executed_flops['backbone'] == hand['executed']
        assert cost.model_flops['heads'] == cost.executed_flops['heads'] > 0
        # float32 parameters, plus buffers of a few hundred bytes (mean/std
        # constants)
        assert 0 <= cost.weight_bytes - 4 * estimate.params_total < 1024
        # a gradient and 2 AdamW moments per trainable parameter
        assert cost.grad_and_optimizer_bytes == 3 * 4 * lora_params
        assert 0 < cost.head_activation_bytes <= cost.activation_bytes
        assert cost.activation_bytes_without_checkpointing > (
            cost.activation_bytes - cost.head_activation_bytes)


def test_frozen_backbone_costs_its_forward_only(tiny_stage2):
    cfg = Config.fromfile(tiny_stage2)
    cfg.model.backbone = cfg.model.backbone.module  # the FrozenBackbone
    cfg.model.freeze_tasks = False
    cost = estimate_cost(cfg, tasks=('caption', )).tasks['caption']
    # no LoRA in a plain EVAViT
    assert cost.model_flops['backbone'] == cost.executed_flops['backbone'] == (
        tiny_vit_flops(2)['forward'] - TINY_VIT['num_layers'] * 8 * 2 *
        TOKENS * TINY_VIT['embed_dims'] * RANK)
    assert cost.activation_bytes_without_checkpointing is None


def test_live_tensor_bytes_counts_storages_once():
    memory = LiveTensorBytes()
    weight = torch.zeros(10, 10)
    with memory:
        view = weight.t()  # aliases a tensor made outside: no new memory
        product = weight @ weight
        product.add_(1)
        alias = product[:5]
    assert memory.live == 400 and memory.peak == 400
    del product
    assert memory.live == 400  # `alias` keeps the storage
    del alias
    assert memory.live == 0 and memory.peak == 400 and view.shape == (10, 10)


def test_tool_ends_with_the_machine_readable_lines(tiny_stage2):
    result = run_script('tools/analysis_tools/estimate_cost.py', tiny_stage2,
                        '--gpus', '1')
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()[-8:]
    number = r'(\d+(?:\.\d+)?(?:e[-+]?\d+)?)'
    assert re.fullmatch(r'params_total: \d+', lines[0])
    assert lines[
        1] == f'params_trainable: {TINY_VIT["num_layers"] * 4 * RANK * 48}'
    for task, (flops_line, memory_line) in zip(
        ('caption', 'segmentation', 'detection'), zip(lines[2::2],
                                                      lines[3::2])):
        flops = re.fullmatch(rf'tflops_per_iter\[{task}\]: {number}',
                             flops_line)
        memory = re.fullmatch(rf'peak_mem_gib\[{task}\]: {number}',
                              memory_line)
        assert flops and memory, (flops_line, memory_line)
        assert float(flops.group(1)) > tiny_vit_flops(1)['model'] / 1e12
    assert re.search(
        r'projection: 300 iterations of 8 per-GPU batches on 1 GPU',
        result.stdout)
