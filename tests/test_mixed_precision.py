"""Mixed precision as the paper configs ship it: LoRA under autocast, the
optimizer wrapper on CPU, and one bf16 (and fp16) training step of every
stage-1 head and every stage-2 task through the configs' own model, data
pipeline, optimizer wrapper and hooks, with a tiny ViT."""
import copy
import runpy
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from paper_configs import (CONFIGS, ROOT, assert_finite_losses,
                           autocast_supported, run_training,
                           seed_drawing_every_task_first, tiny_paper_config)
from tiny import tiny_vit_checkpoint

from visft_mm.demo.demo_coco import generate_demo_coco
from visft_mm.engine import MixedPrecisionOptimWrapper
from visft_mm.models.peft.lora import LoRALinear

# The demo ViT (configs/_base_/models/eva_vit_demo.py).
DEMO_VIT = Config.fromfile(
    str(ROOT / 'configs/_base_/models/eva_vit_demo.py')).eva_backbone.arch
DTYPES = dict(bfloat16=torch.bfloat16, float16=torch.float16)


def dtype_params(names=('bfloat16', 'float16')):
    return [
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                not autocast_supported(DTYPES[name]),
                reason=f'no {name} autocast on this CPU')) for name in names
    ]


# ------------------------------------------------------------------ LoRALinear
def lora_qkv(width=16, rank=4) -> LoRALinear:
    torch.manual_seed(0)
    lora = LoRALinear(
        nn.Linear(width, 3 * width, bias=False),
        rank=rank,
        alpha=2,
        slices='qv')
    nn.init.normal_(lora.lora_B, std=0.5)  # a non-zero update
    lora.weight.requires_grad_(False)  # as FrozenBackbone freezes it
    return lora


@pytest.mark.parametrize('dtype_name', dtype_params())
def test_lora_linear_under_autocast(dtype_name):
    dtype = DTYPES[dtype_name]
    lora = lora_qkv()
    x = torch.randn(2, 5, 16)
    reference = lora(x).detach()  # float32, unmerged
    with torch.autocast('cpu', dtype=dtype):
        out = lora(x)
    assert out.dtype == dtype
    tolerance = dict(
        atol=0.05, rtol=0.02) if dtype == torch.bfloat16 else dict(
            atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(out.float(), reference, **tolerance)
    out.float().square().sum().backward()
    for grad in (lora.lora_A.grad, lora.lora_B.grad):
        assert grad is not None and grad.dtype == torch.float32
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert lora.weight.grad is None  # the base weight stays frozen

    lora.merge()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        merged = lora(x)
    assert merged.dtype == dtype
    torch.testing.assert_close(merged.float(),
                               out.detach().float(), **tolerance)


def test_lora_linear_on_low_precision_base_weights():
    """Base weights stored in bf16 (no autocast): LoRA stays float32 and the
    output keeps the base layer's dtype."""
    lora = lora_qkv()
    x = torch.randn(3, 16)
    reference = lora(x).detach()
    lora.weight.data = lora.weight.data.bfloat16()
    out = lora(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)
    out.float().sum().backward()
    assert lora.lora_A.grad.dtype == torch.float32 and torch.isfinite(
        lora.lora_B.grad).all()


# ----------------------------------------------------------- optimizer wrapper
@pytest.mark.parametrize('dtype_name', dtype_params())
def test_mixed_precision_optim_wrapper_on_cpu(dtype_name):
    model = nn.Linear(4, 1)
    # a static scale that float16 can hold (the dynamic 2**16 overflows and
    # skips the first step, as it should); bfloat16 ignores it
    wrapper = MixedPrecisionOptimWrapper(
        dtype=dtype_name,
        loss_scale=256.,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.ones(2, 4))
    assert out.dtype == DTYPES[dtype_name]
    wrapper.update_params(out.float().sum())
    assert not torch.equal(model.weight, before)
    state = wrapper.state_dict()
    # bfloat16 needs no loss scaling; float16 keeps its scaler for exact resume
    assert ('loss_scaler' in state) == (dtype_name == 'float16')
    wrapper.load_state_dict(copy.deepcopy(state))


# --------------------------------------------------------- the paper configs
# stage-1 config -> the task it trains (the official-heads layouts too)
STAGE1 = {
    'eva_1b_stage1_caption_8xb32-100k_coco.py': 'caption',
    'eva_1b_stage1_detr_8xb1-150k_coco.py': 'detection',
    'eva_1b_stage1_mask2former_8xb1-150k_coco.py': 'segmentation',
    'eva_1b_stage1_unit-detr_official_8xb1-150k_coco.py': 'detection',
    'eva_1b_stage1_mask2former_official_8xb1-150k_coco.py': 'segmentation',
}


@pytest.mark.parametrize('config', sorted(STAGE1))
def test_stage1_step_in_bf16(config, paper_coco, tmp_path):
    task = STAGE1[config]
    cfg = tiny_paper_config(config, paper_coco, tmp_path)
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    (step, ) = run_training(cfg)
    assert_finite_losses(step, task)
    assert step['moved'] and all(
        k.startswith(f'tasks.{task}.') for k in step['moved'])


@pytest.mark.parametrize('dtype_name', dtype_params())
def test_stage2_steps_move_only_lora(dtype_name, paper_coco, tmp_path):
    """One step of each task at the paper's ratios: finite losses, LoRA
    moves, backbone base weights and heads stay bit-identical."""
    cfg = tiny_paper_config('eva_1b_stage2.py', paper_coco, tmp_path)
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    cfg.optim_wrapper.dtype = dtype_name
    if dtype_name == 'float16':
        # float16's dynamic scale starts at 2**16 and skips overflowing steps
        cfg.optim_wrapper.loss_scale = 1024.
    ratios = cfg.train_cfg.task_ratios
    cfg.randomness = dict(
        seed=seed_drawing_every_task_first(
            list(ratios), list(ratios.values())))
    cfg.train_cfg.update(max_iters=len(ratios), val_begin=len(ratios) + 1)
    steps = run_training(cfg)
    assert sorted(step['task'] for step in steps) == sorted(ratios)
    for step in steps:
        assert_finite_losses(step, step['task'])
        moved = step['moved']
        assert moved and all(k.endswith(('lora_A', 'lora_B'))
                             for k in moved), moved
        assert any(k.endswith('lora_B')
                   for k in moved)  # B starts at zero and left it


def test_train_tool_amp_trains_the_demo_stage2_on_cpu(tmp_path, monkeypatch):
    """``tools/train.py configs/visft/demo/demo_stage2.py --amp`` on CPU (heads
    and backbone untrained here: their demo checkpoints come from stage 1)."""
    generate_demo_coco(
        str(tmp_path / 'data/demo_coco'),
        num_train=4,
        num_val=2,
        img_size=112,
        seed=0)
    monkeypatch.chdir(tmp_path)  # the demo config's paths are relative
    work_dir = tmp_path / 'work'
    monkeypatch.setattr(
        sys,
        'argv',
        [
            'train.py',
            str(CONFIGS / 'demo/demo_stage2.py'),
            '--amp',
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            'model.task_checkpoints=None',
            'model.backbone.module.module.init_cfg.checkpoint=' +
            tiny_vit_checkpoint(tmp_path, DEMO_VIT, 112),
            'train_cfg.max_iters=1',
            'train_cfg.val_begin=2',
            # one step of the cheapest task: the other tasks' bf16 steps are
            # tested above
            'train_cfg.task_ratios.segmentation=0',
            'train_cfg.task_ratios.detection=0'
        ])
    runpy.run_path(str(ROOT / 'tools/train.py'), run_name='__main__')
    checkpoint = torch.load(
        work_dir / 'iter_1.pth', map_location='cpu', weights_only=False)
    cfg = Config.fromstring(checkpoint['meta']['cfg'], '.py')
    assert cfg.optim_wrapper.type == 'visft_mm.MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    lora_B = [
        v for k, v in checkpoint['state_dict'].items() if k.endswith('lora_B')
    ]
    assert lora_B and all(v.abs().sum() > 0 for v in lora_B)
