"""EVAViT: numerical parity with timm's Eva, shapes, freezing
(FrozenBackbone), checkpointing, the warning on inputs patches do not
tile."""
import functools
import logging

import pytest
import torch

from visft_mm.models import EVAViT, FrozenBackbone

timm_eva = pytest.importorskip('timm.models.eva')

PRE_NORM = dict(
    embed_dims=64, num_layers=3, num_heads=4, feedforward_channels=160)
POST_NORM = dict(PRE_NORM, post_norm=True)


def _timm_twin(ours: EVAViT, with_cls_token: bool, monkeypatch):
    """timm's Eva with the same arch and weights, resizing the position table
    without antialias as LAVIS/ViSFT do (timm antialiases by default)."""
    monkeypatch.setattr(
        timm_eva, 'resample_abs_pos_embed',
        functools.partial(timm_eva.resample_abs_pos_embed, antialias=False))
    arch = ours.arch_settings
    twin = timm_eva.Eva(
        img_size=224,
        patch_size=14,
        num_classes=0,
        global_pool='',
        use_fc_norm=False,
        embed_dim=arch['embed_dims'],
        depth=arch['num_layers'],
        num_heads=arch['num_heads'],
        mlp_ratio=arch['feedforward_channels'] / arch['embed_dims'],
        qkv_bias=True,
        use_post_norm=arch.get('post_norm', False),
        class_token=with_cls_token,
        dynamic_img_size=True)
    state = ours.state_dict()
    if not with_cls_token:  # timm's table then has no cls entry
        state['pos_embed'] = state['pos_embed'][:, 1:]
    missing, unexpected = twin.load_state_dict(state, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return twin.eval()


def _random_vit(arch, **kwargs) -> EVAViT:
    torch.manual_seed(0)
    model = EVAViT(arch=arch, **kwargs)
    model.init_weights()
    biases_and_norms = ('bias', 'norm1.weight', 'norm2.weight', 'norm.weight')
    with torch.no_grad():  # make biases and norms non-trivial
        for name, p in model.named_parameters():
            if name.endswith(biases_and_norms):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize(
    'arch', [PRE_NORM, POST_NORM], ids=['pre-norm', 'post-norm'])
@pytest.mark.parametrize('size', [(224, 224), (252, 322), (168, 140)])
@pytest.mark.parametrize(
    'with_cls_token', [False, True], ids=['no-cls', 'cls'])
def test_parity_with_timm_eva(arch, size, with_cls_token, monkeypatch):
    ours = _random_vit(arch, with_cls_token=with_cls_token, out_type='raw')
    twin = _timm_twin(ours, with_cls_token, monkeypatch)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = twin.forward_features(x)
        got = ours(x)[0]
    assert got.shape == expected.shape == (2, (size[0] // 14) *
                                           (size[1] // 14) + with_cls_token,
                                           64)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_featmap_output_is_patch_tokens_as_map():
    model = _random_vit(PRE_NORM, with_cls_token=True, out_indices=(0, -1))
    raw = _random_vit(PRE_NORM, with_cls_token=True, out_type='raw')
    x = torch.randn(2, 3, 70, 98)
    with torch.no_grad():
        feats, tokens = model(x), raw(x)[0]
    assert len(feats) == 2 and feats[1].shape == (2, 64, 5, 7)
    torch.testing.assert_close(feats[1].flatten(2).transpose(1, 2), tokens[:,
                                                                           1:])


def test_cls_token_output():
    model = _random_vit(PRE_NORM, with_cls_token=True, out_type='cls_token')
    raw = _random_vit(PRE_NORM, with_cls_token=True, out_type='raw')
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], raw(x)[0][:, 0])


def test_final_norm_applies_to_last_block_only():
    normed = _random_vit(PRE_NORM, out_indices=(1, 2), out_type='raw')
    plain = _random_vit(
        PRE_NORM, out_indices=(1, 2), out_type='raw', final_norm=False)
    plain.load_state_dict({
        k: v
        for k, v in normed.state_dict().items() if not k.startswith('norm.')
    })
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        a, b = normed(x), plain(x)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], normed.norm(b[1]))


def test_arch_zoo_sizes():
    """Parameter counts of the blocks match those of the official models
    (1.010 B; 4.347 B, as timm's eva02_enormous_patch14_clip_224)."""
    for arch, expected in (('eva-g', 1.010e9), ('eva-e', 4.347e9)):
        with torch.device('meta'):
            model = EVAViT(arch=arch)
        count = sum(p.numel() for p in model.blocks.parameters())
        assert abs(count - expected) / expected < 1e-3, (arch, count)
    assert model.blocks[0].post_norm and model.embed_dims == 1792


def test_bad_arguments():
    with pytest.raises(KeyError, match='Unknown EVAViT arch'):
        EVAViT(arch='eva-x')
    with pytest.raises(KeyError, match='lacks'):
        EVAViT(arch=dict(embed_dims=8, num_layers=1))
    with pytest.raises(IndexError):
        EVAViT(arch=PRE_NORM, out_indices=5)
    with pytest.raises(ValueError, match='cls_token'):
        EVAViT(arch=PRE_NORM, out_type='cls_token')


def test_frozen_backbone_loads_when_built_has_no_grads_stays_in_eval(tmp_path):
    """FrozenBackbone holds its pretrained weights from the moment it is
    built (tools/test.py never calls init_weights), trains nothing and runs
    in eval mode; init_weights changes nothing."""
    pretrained = _random_vit(PRE_NORM).state_dict()
    path = tmp_path / 'vit.pth'
    torch.save(pretrained, path)
    model = FrozenBackbone(
        module=dict(
            type='EVAViT',
            arch=PRE_NORM,
            init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    for key, value in pretrained.items():
        assert torch.equal(model.module.state_dict()[key], value), key
    model.train()
    assert model.training and not model.module.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model.state_dict() == {}
    model.init_weights()
    for key, value in pretrained.items():
        assert torch.equal(model.module.state_dict()[key], value), key


def test_input_not_a_multiple_of_the_patch_size_warns_once(log_records):
    model = EVAViT(arch=PRE_NORM).eval()
    with torch.no_grad():
        for size in ((56, 56), (60, 59), (60, 59), (61, 70)):
            model(torch.randn(1, 3, *size))
    warnings = [
        r.getMessage() for r in log_records if r.levelno == logging.WARNING
    ]
    assert warnings == [
        'EVAViT: a 60x59 input is not a multiple of the patch size 14, so '
        'its last 4 rows and 3 columns of pixels are dropped; pad inputs '
        'with pad_size_divisor=14 in the data preprocessor (warned once)'
    ]


def test_gradient_checkpointing_matches():
    ref = _random_vit(PRE_NORM).train()
    ckpt = _random_vit(PRE_NORM, with_cp=True).train()
    x = torch.randn(2, 3, 56, 84)
    ref(x)[0].square().sum().backward()
    ckpt(x)[0].square().sum().backward()
    for (name, a), (_, b) in zip(ref.named_parameters(),
                                 ckpt.named_parameters()):
        torch.testing.assert_close(
            a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_resized_position_table_cache_follows_weight_updates():
    model = _random_vit(PRE_NORM)
    model.requires_grad_(False)
    first = model.resized_pos_embed(5, 7)
    assert model.resized_pos_embed(5, 7) is first  # cached
    with torch.no_grad():
        model.pos_embed.add_(1.0)
    updated = model.resized_pos_embed(5, 7)
    assert updated is not first
    torch.testing.assert_close(updated, first + 1.0, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_runs_close_to_fp32():
    model = _random_vit(PRE_NORM)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        ref = model(x)[0]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)[0]
    assert not torch.equal(low.float(), ref)  # the matmuls ran in bf16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()
