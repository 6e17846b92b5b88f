"""EVA checkpoint layouts: detection, conversion to EVAViT keys, and loading
with a full key report, on a tiny synthetic EVAViT (C=32, 2 blocks, 4x4
grid)."""
import logging

import pytest
import torch
from tiny import NARROW_VIT

from visft_mm.checkpoints.eva_layouts import (convert_eva_state_dict,
                                              load_eva_checkpoint)
from visft_mm.checkpoints.io import CheckpointError, load_model_state_dict
from visft_mm.models.backbones import EVAViT
from visft_mm.models.peft import LoRAModel

NORM_KEYS = ['norm.weight', 'norm.bias']


def make_vit(**kwargs) -> EVAViT:
    return EVAViT(arch=NARROW_VIT, pretrain_img_size=56, **kwargs)


@pytest.fixture(scope='module')
def reference():
    """A tiny EVAViT with a cls token and every tensor random."""
    torch.manual_seed(0)
    model = make_vit(with_cls_token=True)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.1)
    return model.eval()


@pytest.fixture(scope='module')
def ref_sd(reference):
    return {k: v.clone() for k, v in reference.state_dict().items()}


def without(sd, *names):
    return {k: v for k, v in sd.items() if k not in names}


def prefixed(prefix, sd):
    return {prefix + k: v for k, v in sd.items()}


LORA_TENSORS = {
    f'blocks.{i}.attn.qkv.{p}': torch.randn(8, 32)
    for i in range(2)
    for p in ('lora_A', 'lora_B')
}

# name -> (file content from the reference state dict, layout, dropped groups,
# missing)
LAYOUTS = {
    'lavis_without_norm':
    (lambda sd: without(sd, *NORM_KEYS), 'lavis', [], NORM_KEYS),
    'eva_clip':
    (lambda sd: {
        **prefixed('visual.', sd), 'visual.head.weight': torch.randn(16, 32),
        'visual.head.bias': torch.randn(16),
        'text.token_embedding.weight': torch.randn(10, 8),
        'text.positional_embedding': torch.randn(4, 8),
        'text.ln_final.weight': torch.randn(8),
        'logit_scale': torch.tensor(4.6)
    }, 'eva_clip',
     ['visual.head.* (2 tensors)', 'text.* (3 tensors)', 'logit_scale'], []),
    'visft_visual':
    (lambda sd: without(sd, 'cls_token'), 'visft_visual', [], []),
    'mmengine_backbone': (lambda sd: {
        'meta': {
            'epoch': 3
        },
        'state_dict': {
            **prefixed('backbone.', sd), 'neck.conv.weight':
            torch.randn(4, 32, 1, 1),
            'bbox_head.fc.weight':
            torch.randn(5, 4),
            'bbox_head.fc.bias':
            torch.randn(5)
        }
    }, 'visft_mm', ['neck.* (1 tensor)', 'bbox_head.* (2 tensors)'], []),
    'ddp_lora_wrapped_backbone': (lambda sd: {
        'model':
        prefixed('module.backbone.module.module.', {
            **sd,
            **LORA_TENSORS
        })
    }, 'visft_mm', ['LoRA *.lora_A/*.lora_B (4 tensors)'], []),
    'blip2_visual_encoder':
    (lambda sd:
     {
         **prefixed('visual_encoder.', sd), 'ln_vision.weight': torch.randn(32
                                                                            ),
         'ln_vision.bias': torch.randn(32),
         'query_tokens': torch.randn(1, 4, 8),
         'Qformer.bert.embeddings.word_embeddings.weight': torch.randn(10, 8)
     }, 'lavis_blip2',
     ['ln_vision.* (2 tensors)', 'query_tokens', 'Qformer.* (1 tensor)'], []),
}


@pytest.mark.parametrize('name', list(LAYOUTS))
def test_convert_each_layout(name, ref_sd, tmp_path):
    build, layout, dropped_groups, missing = LAYOUTS[name]
    path = tmp_path / f'{name}.pth'
    torch.save(build(ref_sd), path)

    converted = load_eva_checkpoint(path)

    expected = without(ref_sd, *missing)
    if layout == 'visft_visual':
        expected = without(expected, 'cls_token')
    assert converted.layout == layout
    assert sorted(converted.state_dict) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(converted.state_dict[key], value), key
    assert sorted(converted.dropped_groups()) == sorted(dropped_groups)
    assert converted.missing == missing
    assert len(converted.kept) == len(expected)
    assert converted.arch == dict(
        embed_dims=32, num_layers=2, feedforward_channels=64)


def test_eva_clip_report_lists_dropped_keys(ref_sd, tmp_path):
    path = tmp_path / 'clip.pt'
    torch.save(LAYOUTS['eva_clip'][0](ref_sd), path)
    converted = load_eva_checkpoint(path)
    assert {
        'logit_scale', 'visual.head.weight', 'visual.head.bias',
        'text.ln_final.weight'
    } <= set(converted.dropped)
    assert 'visual.cls_token' in converted.kept


def test_corrupt_file(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(b'\x00\x13not a checkpoint' * 20)
    with pytest.raises(
            CheckpointError, match='cannot read the checkpoint') as info:
        load_model_state_dict(path)
    assert str(path) in str(info.value)
    assert '\n' not in str(info.value)


def test_random_bytes_are_rejected(tmp_path):
    path = tmp_path / 'random.pth'
    path.write_bytes(
        torch.randint(
            0,
            256, (4096, ),
            generator=torch.Generator().manual_seed(1),
            dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match='cannot read the checkpoint'):
        load_eva_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_model_state_dict(tmp_path / 'absent.pth')


@pytest.mark.parametrize('obj, message', [
    ([torch.zeros(1)], 'expected a state dict of tensors, found a list'),
    ({
        'pos_embed': torch.zeros(1),
        'epoch': 3
    }, 'epoch are not tensors'),
    ({}, 'empty'),
])
def test_not_a_state_dict(tmp_path, obj, message):
    path = tmp_path / 'odd.pth'
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        load_model_state_dict(path)


def test_unrecognised_file():
    with pytest.raises(
            CheckpointError, match='not an EVA vision-tower checkpoint'):
        convert_eva_state_dict({'encoder.layer.0.weight': torch.zeros(2)},
                               source='bert.bin')


@pytest.mark.parametrize('extra_key, feature', [
    ('rope.freqs_cos', 'rotary position embedding'),
    ('blocks.0.attn.rope.freqs_sin', 'rotary position embedding'),
    ('blocks.0.mlp.w12.weight', 'SwiGLU'),
    ('blocks.1.mlp.ffn_ln.weight', 'sub-LayerNorm'),
    ('blocks.0.attn.inner_attn_ln.weight', 'sub-LayerNorm'),
    ('rel_pos_bias.relative_position_bias_table', 'relative position bias'),
    ('blocks.0.gamma_1', 'layer scale'),
])
def test_unsupported_variants(ref_sd, extra_key, feature):
    sd = prefixed('visual.', {**ref_sd, extra_key: torch.zeros(4)})
    with pytest.raises(
            CheckpointError,
            match=f'unsupported EVA variant with {feature}') as info:
        convert_eva_state_dict(sd, source='eva02.pt')
    assert str(info.value).startswith('eva02.pt: ')


def test_unknown_tower_key(ref_sd):
    with pytest.raises(
            CheckpointError,
            match=r'no place in EVAViT: blocks\.0\.attn\.qkv\.bias'):
        convert_eva_state_dict({
            **ref_sd, 'blocks.0.attn.qkv.bias':
            torch.zeros(96)
        })


def test_init_weights_loads_identical_model(reference, ref_sd, tmp_path,
                                            log_records):
    path = tmp_path / 'eva.pth'
    torch.save(LAYOUTS['eva_clip'][0](ref_sd), path)
    model = make_vit(
        with_cls_token=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], reference(x)[0])
    assert not [r for r in log_records if r.levelno >= logging.WARNING]
    assert any('loaded' in r.getMessage() and 'eva_clip' in r.getMessage()
               for r in log_records)


def test_cls_token_unused_without_cls(ref_sd, tmp_path, log_records):
    path = tmp_path / 'eva_vit_g.pth'
    torch.save(ref_sd, path)
    model = make_vit(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.pos_embed, ref_sd['pos_embed'])
    assert any(
        'cls_token is unused with with_cls_token=False' in r.getMessage()
        and r.levelno == logging.INFO for r in log_records)


def test_missing_norm_warns_and_keeps_default_init(ref_sd, tmp_path,
                                                   log_records):
    path = tmp_path / 'eva_vit_g.pth'
    torch.save(LAYOUTS['lavis_without_norm'][0](ref_sd), path)
    model = make_vit(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    warnings = [
        r.getMessage() for r in log_records if r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert 'no final LayerNorm' in warnings[
        0] and 'weight 1, bias 0' in warnings[0]
    assert torch.equal(model.norm.weight, torch.ones(32))
    assert torch.equal(model.norm.bias, torch.zeros(32))
    assert torch.equal(model.blocks[1].mlp.fc2.weight,
                       ref_sd['blocks.1.mlp.fc2.weight'])


def test_final_norm_false_skips_norm(ref_sd, tmp_path, log_records):
    path = tmp_path / 'eva.pth'
    torch.save(ref_sd, path)
    model = make_vit(
        with_cls_token=True,
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert any('norm.* is unused with final_norm=False' in r.getMessage()
               for r in log_records)


def test_missing_block_key_is_an_error(ref_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(without(ref_sd, 'blocks.1.attn.v_bias'), path)
    model = make_vit(
        with_cls_token=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            CheckpointError, match=r'missing 1 \(blocks\.1\.attn\.v_bias\)'):
        model.init_weights()


def test_model_deeper_than_checkpoint(ref_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(ref_sd, path)
    model = EVAViT(
        arch={
            **NARROW_VIT, 'num_layers': 3
        },
        pretrain_img_size=56,
        with_cls_token=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            CheckpointError, match=r'missing 13 \(blocks\.2\.norm1\.weight'):
        model.init_weights()


def test_wrong_width_is_an_error(ref_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(ref_sd, path)
    model = EVAViT(
        arch={
            **NARROW_VIT, 'embed_dims': 48
        },
        pretrain_img_size=56,
        with_cls_token=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='shape mismatches') as info:
        model.init_weights()
    assert 'pos_embed (1, 17, 32) in the file vs (1, 17, 48)' in str(
        info.value)


def test_wrong_position_grid_is_an_error(ref_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(ref_sd, path)
    model = EVAViT(
        arch=NARROW_VIT,
        pretrain_img_size=70,
        with_cls_token=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            CheckpointError,
            match=r'shape mismatches 1 \(pos_embed \(1, 17, 32\)'):
        model.init_weights()


def test_lora_wrapped_model_loads_base_weights(ref_sd, tmp_path):
    path = tmp_path / 'eva.pth'
    torch.save(ref_sd, path)
    lora_model = LoRAModel(
        make_vit(init_cfg=dict(type='Pretrained', checkpoint=str(path))),
        rank=4)
    lora_model.init_weights()
    qkv = lora_model.module.blocks[0].attn.qkv
    assert torch.equal(qkv.weight, ref_sd['blocks.0.attn.qkv.weight'])
    assert qkv.lora_A.shape == (8, 32)
