"""The checkpoint tools (eva2visft.py, merge_lora.py) run as scripts, and the
LoRA file helpers behind them, on tiny synthetic checkpoints."""
import os
from types import SimpleNamespace

import loralib
import pytest
import torch
from mmengine.config import Config
from tiny import NARROW_VIT, ROOT, assert_single_error, build_visft, run_script
from tiny import run_script_in_process as run_tool

from visft_mm.checkpoints.io import CheckpointError, load_model_state_dict
from visft_mm.checkpoints.lora_files import (LoRAWeights, load_lora,
                                             merge_lora_state_dict, save_lora,
                                             to_official_layout)
from visft_mm.models.backbones import EVAViT
from visft_mm.models.peft import LoRAModel
from visft_mm.registry import HOOKS

EVA2VISFT = 'tools/model_converters/eva2visft.py'
MERGE_LORA = 'tools/model_converters/merge_lora.py'
C, RANK = NARROW_VIT['embed_dims'], 4


def make_vit(**kwargs) -> EVAViT:
    return EVAViT(arch=NARROW_VIT, pretrain_img_size=56, **kwargs)


@pytest.fixture(scope='module')
def base_sd():
    """State dict of a tiny EVAViT without cls token, every tensor random."""
    torch.manual_seed(0)
    model = make_vit()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def lora_wrapped(base_sd, alpha):
    """A LoRAModel on q and v of every qkv, with non-zero random lora_B."""
    torch.manual_seed(1)
    vit = make_vit()
    vit.load_state_dict(base_sd)
    lora_model = LoRAModel(vit, rank=RANK, alpha=alpha)
    with torch.no_grad():
        for layer in lora_model.lora_layers.values():
            layer.lora_B.normal_()
    return lora_model.eval()


def official_lora(num_layers=2):
    torch.manual_seed(2)
    return {
        f'visual.blocks.{i}.attn.qkv.{name}': torch.randn(shape)
        for i in range(num_layers)
        for name, shape in (('lora_A', (2 * RANK, C)), ('lora_B', (2 * C,
                                                                   RANK)))
    }


# ------------------------------------------------------------------ eva2visft
def test_eva2visft_eva_clip(base_sd, tmp_path):
    src, dst = tmp_path / 'clip.pt', tmp_path / 'out' / 'eva.pth'
    torch.save(
        {
            **{
                f'visual.{k}': v
                for k, v in base_sd.items()
            }, 'visual.cls_token': torch.randn(1, 1, C),
            'visual.head.weight': torch.randn(16, C),
            'visual.head.bias': torch.randn(16),
            'text.token_embedding.weight': torch.randn(10, 8),
            'text.ln_final.weight': torch.randn(8),
            'logit_scale': torch.tensor(4.6)
        }, src)

    result = run_script(EVA2VISFT, src, dst)  # in a child process, as run

    assert result.returncode == 0, result.stderr
    assert 'layout:    eva_clip' in result.stdout
    assert ('visual.head.* (2 tensors), text.* (2 tensors), logit_scale'
            in result.stdout)
    assert 'cls_token: kept' in result.stdout
    assert 'WARNING' not in result.stderr
    assert torch.load(
        dst, weights_only=True)['meta'] == dict(
            arch=dict(
                embed_dims=C,
                num_layers=2,
                feedforward_channels=64,
                post_norm=False))
    out = load_model_state_dict(dst)
    assert sorted(out) == sorted([*base_sd, 'cls_token'])
    assert all(torch.equal(out[k], v) for k, v in base_sd.items())


def test_eva2visft_lavis_without_norm_drop_cls(base_sd, tmp_path):
    src, dst = tmp_path / 'eva_vit_g.pth', tmp_path / 'eva_g.pth'
    lavis = {k: v for k, v in base_sd.items() if not k.startswith('norm.')}
    torch.save({**lavis, 'cls_token': torch.randn(1, 1, C)}, src)

    result = run_tool(EVA2VISFT, src, dst, '--drop-cls-token')

    assert result.returncode == 0, result.stderr
    assert 'layout:    lavis' in result.stdout
    assert 'cls_token: dropped' in result.stdout
    assert ('the model will use the default LayerNorm init: weight 1, bias 0'
            in result.stderr)
    assert sorted(load_model_state_dict(dst)) == sorted(lavis)


def test_eva2visft_corrupt_input(tmp_path):
    src, dst = tmp_path / 'corrupt.pth', tmp_path / 'eva.pth'
    src.write_bytes(os.urandom(2048))

    result = run_tool(EVA2VISFT, src, dst)

    assert f'error: {src}: cannot read the checkpoint' in assert_single_error(
        result)
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['corrupt.pth']


def test_eva2visft_incomplete_checkpoint(base_sd, tmp_path):
    src, dst = tmp_path / 'partial.pth', tmp_path / 'eva.pth'
    torch.save(
        {
            k: v
            for k, v in base_sd.items() if k != 'blocks.1.mlp.fc1.bias'
        }, src)
    line = assert_single_error(run_tool(EVA2VISFT, src, dst))
    assert 'missing blocks.1.mlp.fc1.bias' in line
    assert not dst.exists()


@pytest.mark.parametrize('tool', [EVA2VISFT, MERGE_LORA])
def test_converters_refuse_a_backbone_with_unmerged_lora(
        tool, base_sd, tmp_path):
    """The converters read backbones through the shared loader, so a file
    holding base weights and LoRA tensors is refused as everywhere else
    instead of being written out as the base model."""
    backbone, lora, out = (tmp_path / 'base_and_lora.pth',
                           tmp_path / 'lora.pth', tmp_path / 'out.pth')
    lora_model = lora_wrapped(base_sd, alpha=1.)
    torch.save(
        {
            f'backbone.module.{k}': v
            for k, v in lora_model.module.state_dict().items()
        }, backbone)
    save_lora(lora_model, lora)
    args = [backbone, out] if tool == EVA2VISFT else [backbone, lora, out]

    line = assert_single_error(run_tool(tool, *args))

    assert f'{backbone}: holds 4 LoRA tensors' in line
    assert 'merge_lora.py' in line
    assert not out.exists()


# ----------------------------------------------------------------- merge_lora
def test_merge_matches_lora_model(base_sd, tmp_path):
    lora_model = lora_wrapped(base_sd, alpha=2.)
    backbone, lora, out = (tmp_path / 'eva.pth', tmp_path / 'lora.pth',
                           tmp_path / 'merged.pth')
    torch.save(
        {'state_dict': {
            f'backbone.{k}': v
            for k, v in base_sd.items()
        }}, backbone)
    save_lora(lora_model, lora)

    result = run_script(MERGE_LORA, backbone, lora, out)  # a child process

    assert result.returncode == 0, result.stderr
    assert 'visft_mm layout, 2 layers, rank 4, alpha 2' in result.stdout
    merged_model = make_vit(
        init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    merged_model.init_weights()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        expected = lora_model(x)[0]
        actual = merged_model.eval()(x)[0]
    assert not torch.allclose(expected,
                              make_vit().eval().requires_grad_(False)(x)[0])
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_merge_official_layout(base_sd, tmp_path):
    backbone, lora, out = (tmp_path / 'visual.pt', tmp_path / 'eva_lora.pt',
                           tmp_path / 'merged.pth')
    official = official_lora()
    torch.save(base_sd, backbone)
    torch.save(official, lora)

    result = run_tool(MERGE_LORA, backbone, lora, out)

    assert result.returncode == 0, result.stderr
    assert 'official layout, 2 layers, rank 4, alpha 1' in result.stdout
    merged = load_model_state_dict(out)
    assert sorted(merged) == sorted(base_sd)
    for i in range(2):
        key = f'blocks.{i}.attn.qkv.weight'
        A = official[f'visual.blocks.{i}.attn.qkv.lora_A']
        B = official[f'visual.blocks.{i}.attn.qkv.lora_B']
        W, W_merged = base_sd[key], merged[key]
        torch.testing.assert_close(W_merged[:C],
                                   W[:C] + B[:C] @ A[:RANK] / RANK)
        assert torch.equal(W_merged[C:2 * C], W[C:2 * C])
        torch.testing.assert_close(W_merged[2 * C:],
                                   W[2 * C:] + B[C:] @ A[RANK:] / RANK)

        reference = loralib.MergedLinear(
            C,
            3 * C,
            r=RANK,
            lora_alpha=1,
            enable_lora=[True, False, True],
            bias=False)
        with torch.no_grad():
            reference.weight.copy_(W)
            reference.lora_A.copy_(A)
            reference.lora_B.copy_(B)
        reference.train(False)
        torch.testing.assert_close(W_merged, reference.weight.detach())
    others = [k for k in base_sd if not k.endswith('attn.qkv.weight')]
    assert all(torch.equal(merged[k], base_sd[k]) for k in others)


def test_merge_official_layout_with_alpha(base_sd, tmp_path):
    backbone, lora, out = (tmp_path / 'visual.pt', tmp_path / 'eva_lora.pt',
                           tmp_path / 'merged.pth')
    official = official_lora()
    torch.save(base_sd, backbone)
    torch.save(official, lora)
    assert run_tool(MERGE_LORA, backbone, lora, out, '--alpha',
                    '8').returncode == 0
    A, B = official['visual.blocks.0.attn.qkv.lora_A'], official[
        'visual.blocks.0.attn.qkv.lora_B']
    merged = load_model_state_dict(out)['blocks.0.attn.qkv.weight']
    W = base_sd['blocks.0.attn.qkv.weight']
    torch.testing.assert_close(merged[:C], W[:C] + B[:C] @ A[:RANK] * 8 / RANK)


def test_stage2_run_merges_at_its_own_alpha(tmp_path):
    """A stage-2 run checkpoint stores its LoRA settings (the shipped
    runtime's hooks write them as the Runner saves), so merge_lora.py merges
    it at the run's alpha (4) without --alpha; an alpha that contradicts the
    stored one is refused."""
    model = build_visft(stage=2, directory=tmp_path / 'pretrained')
    lora_model = model.backbone
    with torch.no_grad():
        for layer in lora_model.lora_layers.values():
            layer.lora_B.normal_(std=0.1)
    # What Runner.save_checkpoint writes, hooks included.
    checkpoint = {'meta': {'iter': 1}, 'state_dict': model.state_dict()}
    runtime = Config.fromfile(str(ROOT / 'configs/_base_/default_runtime.py'))
    for hook in runtime.custom_hooks:
        HOOKS.build(hook).before_save_checkpoint(
            SimpleNamespace(model=model), checkpoint)
    backbone, run_checkpoint = tmp_path / 'eva.pth', tmp_path / 'iter_1.pth'
    torch.save(checkpoint, run_checkpoint)
    base = {
        k: v.clone()
        for k, v in lora_model.network.state_dict().items() if 'lora_' not in k
    }
    torch.save(base, backbone)
    lora_model.merge()
    expected = {k: lora_model.network.state_dict()[k] for k in base}

    result = run_tool(MERGE_LORA, backbone, run_checkpoint,
                      tmp_path / 'merged.pth')

    assert result.returncode == 0, result.stderr
    assert 'visft_mm_run layout, 2 layers, rank 4, alpha 4' in result.stdout
    merged = load_model_state_dict(tmp_path / 'merged.pth')
    assert sorted(merged) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, msg=key)
    assert not torch.equal(merged['blocks.0.attn.qkv.weight'],
                           base['blocks.0.attn.qkv.weight'])
    with pytest.raises(
            ValueError,
            match=r'alpha 1.0 was requested but the file stores alpha '
            r'\[4.0\]'):
        load_lora(run_checkpoint, alpha=1)
    assert load_lora(
        run_checkpoint, alpha=4).layers == load_lora(run_checkpoint).layers


def test_export_official_round_trip(base_sd, tmp_path):
    lora_model = lora_wrapped(base_sd, alpha=1.)
    backbone, ours, official = (tmp_path / 'eva.pth', tmp_path / 'lora.pth',
                                tmp_path / 'off.pt')
    out = tmp_path / 'merged.pth'
    torch.save(base_sd, backbone)
    save_lora(lora_model, ours)

    result = run_tool(MERGE_LORA, '--export-official', ours, official)
    assert result.returncode == 0, result.stderr
    exported = torch.load(official, weights_only=True)
    assert sorted(exported) == sorted(f'visual.blocks.{i}.attn.qkv.lora_{p}'
                                      for i in range(2) for p in 'AB')

    assert run_tool(MERGE_LORA, backbone, official, out).returncode == 0
    from_official = load_model_state_dict(out)
    from_ours = merge_lora_state_dict(base_sd, load_lora(ours))
    assert sorted(from_official) == sorted(from_ours)
    assert all(torch.equal(from_ours[k], from_official[k]) for k in from_ours)


def test_export_official_rejects_alpha(base_sd, tmp_path):
    ours, official = tmp_path / 'lora.pth', tmp_path / 'off.pt'
    save_lora(lora_wrapped(base_sd, alpha=2.), ours)
    line = assert_single_error(
        run_tool(MERGE_LORA, '--export-official', ours, official))
    assert 'alpha 1' in line
    assert not official.exists()


def test_merge_lora_deeper_than_backbone(base_sd, tmp_path):
    backbone, lora, out = (tmp_path / 'visual.pt', tmp_path / 'eva_lora.pt',
                           tmp_path / 'merged.pth')
    torch.save(base_sd, backbone)
    torch.save(official_lora(num_layers=3), lora)
    line = assert_single_error(run_tool(MERGE_LORA, backbone, lora, out))
    assert ('error: LoRA layer blocks.2.attn.qkv has no '
            'blocks.2.attn.qkv.weight') in line
    assert not out.exists()


def test_load_lora_corrupt_file(tmp_path):
    lora = tmp_path / 'eva_lora.pt'
    lora.write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(
            CheckpointError, match=f'{lora}: cannot read the checkpoint'):
        load_lora(lora)


def test_load_lora_rejects_non_lora_tensors(base_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(base_sd, path)
    with pytest.raises(CheckpointError, match='not a LoRA file'):
        load_lora(path)


# ------------------------------------------------------ LoRA file helpers
def test_load_lora_ours_and_official_agree(base_sd, tmp_path):
    lora_model = lora_wrapped(base_sd, alpha=1.)
    save_lora(lora_model, tmp_path / 'lora.pth')
    ours = load_lora(tmp_path / 'lora.pth')
    torch.save(
        {
            k.replace('visual.', 'visft_heads.backbone.0.'): v
            for k, v in to_official_layout(ours).items()
        }, tmp_path / 'train.pt')
    official = load_lora(tmp_path / 'train.pt')
    assert ours.layers == official.layers == {
        f'blocks.{i}.attn.qkv':
        dict(rank=RANK, alpha=1., slices=(True, False, True))
        for i in range(2)
    }
    assert all(
        torch.equal(ours.state_dict[k], official.state_dict[k])
        for k in ours.state_dict)
    with pytest.raises(ValueError, match='leave alpha unset'):
        load_lora(tmp_path / 'lora.pth', alpha=4.)


def test_merge_lora_state_dict_errors(base_sd):
    A, B = torch.randn(2 * RANK, C), torch.randn(2 * C, RANK)
    weights = LoRAWeights(
        state_dict={
            'blocks.0.attn.qkv.lora_A': A,
            'blocks.0.attn.qkv.lora_B': B
        },
        layers={
            'blocks.0.attn.qkv':
            dict(rank=RANK, alpha=1., slices=(True, False, True))
        })
    with pytest.raises(KeyError, match='has no blocks.0.attn.qkv.weight'):
        merge_lora_state_dict({'pos_embed': base_sd['pos_embed']}, weights)
    narrow = {**base_sd, 'blocks.0.attn.qkv.weight': torch.zeros(3 * C, C + 1)}
    with pytest.raises(ValueError, match='update for the'):
        merge_lora_state_dict(narrow, weights)
