"""The export tools (visft2evaclip.py, visft2lavis.py, visft2mmpretrain.py):
each export, loaded into the model class that consumes it, gives the features
of our EVAViT with the LoRA applied unmerged (LoRAModel), on tiny random
models (32 wide, 3 blocks, 4x4 grid), fp32, CPU."""
from pathlib import Path

import mmpretrain
import open_clip
import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.models import BEiTViT
from timm.models import register_model
from timm.models.eva import (Eva, checkpoint_filter_fn,
                             eva02_enormous_patch14_clip_224,
                             eva_giant_patch14_224)
from tiny import assert_single_error, run_script_in_process

from visft_mm.checkpoints.exports import export_lavis, to_beit_key
from visft_mm.checkpoints.io import CheckpointError
from visft_mm.checkpoints.lora_files import load_lora, save_lora
from visft_mm.models.backbones import EVAViT
from visft_mm.models.peft import LoRAModel

C, DEPTH, HEADS, FFN, IMG, RANK, CLIP_DIM = 32, 3, 4, 64, 56, 4, 16
TINY_TIMM = dict(
    img_size=IMG, embed_dim=C, depth=DEPTH, num_heads=HEADS, mlp_ratio=FFN / C)
BLIP2_RETRIEVAL_CFG = (
    Path(mmpretrain.__file__).parent / '.mim' / 'configs' / 'blip2' /
    'blip2_8xb32_retrieval.py')


# Tiny stand-ins for the timm trunks of open_clip's EVA01-g-14 and
# EVA02-E-14-plus.
def visft_test_eva_g_tiny(pretrained=False, **kwargs):
    return eva_giant_patch14_224(pretrained=False, **{**TINY_TIMM, **kwargs})


def visft_test_eva_e_tiny(pretrained=False, **kwargs):
    return eva02_enormous_patch14_clip_224(
        pretrained=False, **{
            **TINY_TIMM,
            **kwargs
        })


for _fn in (visft_test_eva_g_tiny, visft_test_eva_e_tiny):
    if not timm.is_model(_fn.__name__):
        register_model(_fn)

# open_clip config -> (tiny timm trunk, whether EVAViT runs post-norm blocks)
CLIP_MODELS = {
    'EVA01-g-14': ('visft_test_eva_g_tiny', False),
    'EVA02-E-14-plus': ('visft_test_eva_e_tiny', True)
}


def arch(post_norm=False, num_layers=DEPTH):
    return dict(
        embed_dims=C,
        num_layers=num_layers,
        num_heads=HEADS,
        feedforward_channels=FFN,
        post_norm=post_norm)


def tiny_open_clip(name: str) -> open_clip.CustomTextCLIP:
    """open_clip's EVA-CLIP config ``name`` with a tiny trunk and text
    tower."""
    cfg = open_clip.get_model_config(name)
    assert cfg.pop('custom_text')
    cfg['embed_dim'] = CLIP_DIM
    cfg['vision_cfg'].update(
        image_size=IMG, timm_model_name=CLIP_MODELS[name][0])
    cfg['text_cfg'].update(
        context_length=8, vocab_size=64, width=16, heads=2, layers=1)
    torch.manual_seed(0)
    return open_clip.CustomTextCLIP(**cfg).eval()


def load_original_eva_clip(model: open_clip.CustomTextCLIP,
                           state_dict) -> None:
    """Load an original EVA-CLIP file (``visual.*``) as timm / open_clip do:
    timm's ``checkpoint_filter_fn`` maps the visual tower (open_clip 3.3 has no
    converter of its own); text tower and ``logit_scale`` load as they are."""
    trunk = checkpoint_filter_fn(state_dict, model.visual.trunk)
    model.load_state_dict(
        {
            **{
                f'visual.trunk.{k}': v
                for k, v in trunk.items()
            },
            **{
                k: v
                for k, v in state_dict.items() if not k.startswith('visual.')
            }
        },
        strict=True)


def random_eva_clip_checkpoint(name: str) -> dict:
    """An original EVA-CLIP checkpoint: random visual tower (cls token, head)
    and the text tower of the tiny open_clip model."""
    torch.manual_seed(1)
    vit = EVAViT(
        arch=arch(CLIP_MODELS[name][1]),
        pretrain_img_size=IMG,
        with_cls_token=True)
    visual = {
        k: (1 + 0.1 * torch.randn_like(v))
        if 'norm' in k and k.endswith('weight') else 0.1 * torch.randn_like(v)
        for k, v in vit.state_dict().items()
    }
    visual.update({
        'head.weight': 0.1 * torch.randn(CLIP_DIM, C),
        'head.bias': torch.randn(CLIP_DIM)
    })
    text = {
        k: v.clone()
        for k, v in tiny_open_clip(name).state_dict().items()
        if k.startswith('text.')
    }
    return {
        **{
            f'visual.{k}': v
            for k, v in visual.items()
        },
        **text, 'logit_scale': torch.tensor(4.6)
    }


def visual_tower(clip_sd: dict, drop=('head.', )) -> dict:
    return {
        k[len('visual.'):]: v
        for k, v in clip_sd.items()
        if k.startswith('visual.') and not k[len('visual.'):].startswith(drop)
    }


def write_official_lora(path) -> None:
    torch.manual_seed(2)
    torch.save(
        {
            f'visual.blocks.{i}.attn.qkv.{name}': 0.3 * torch.randn(shape)
            for i in range(DEPTH)
            for name, shape in (('lora_A', (2 * RANK, C)), ('lora_B',
                                                            (2 * C, RANK)))
        }, path)


def write_our_lora(path, post_norm=False) -> None:
    torch.manual_seed(3)
    lora_model = LoRAModel(
        EVAViT(arch=arch(post_norm), pretrain_img_size=IMG),
        rank=RANK,
        alpha=2.)
    with torch.no_grad():
        for layer in lora_model.lora_layers.values():
            layer.lora_A.normal_(std=0.3)
            layer.lora_B.normal_(std=0.3)
    save_lora(lora_model, path)


def write_lora(path, layout: str, post_norm=False):
    if layout == 'official':
        write_official_lora(path)
    else:
        write_our_lora(path, post_norm)
    return load_lora(path)


def lora_reference(visual: dict, lora, post_norm=False, **kwargs) -> LoRAModel:
    """EVAViT with cls token on the base weights, LoRA applied unmerged."""
    vit = EVAViT(
        arch=arch(post_norm),
        pretrain_img_size=IMG,
        with_cls_token=True,
        **kwargs)
    vit.load_state_dict(visual)
    layer = next(iter(lora.layers.values()))
    model = LoRAModel(vit, rank=layer['rank'], alpha=layer['alpha'])
    model.load_lora_state_dict(lora.state_dict)
    return model.eval()


@pytest.fixture
def tool():
    """Run a tool as ``python tools/model_converters/<script> ARGS`` would, in
    this process."""
    return lambda script, *args: run_script_in_process(
        f'tools/model_converters/{script}', *args)


@pytest.fixture(scope='module')
def images():
    return torch.randn(
        2, 3, IMG, IMG, generator=torch.Generator().manual_seed(4))


# ------------------------------------------------------------------ EVA-CLIP
@pytest.mark.parametrize('clip_name, lora_layout',
                         [('EVA01-g-14', 'official'),
                          ('EVA02-E-14-plus', 'visft_mm')])
def test_eva_clip_export_in_open_clip(clip_name, lora_layout, tool, images,
                                      tmp_path):
    post_norm = CLIP_MODELS[clip_name][1]
    clip_sd = random_eva_clip_checkpoint(clip_name)
    clip_path, backbone, lora_path = (tmp_path / 'clip.pt',
                                      tmp_path / 'visual.pt',
                                      tmp_path / 'l.pt')
    out = tmp_path / 'out' / 'clip_visft.pt'
    torch.save(clip_sd, clip_path)
    # The official ViSFT visual file: no cls token, no head.
    torch.save(visual_tower(clip_sd, drop=('head.', 'cls_token')), backbone)
    lora = write_lora(lora_path, lora_layout, post_norm)

    result = tool('visft2evaclip.py', backbone, out, '--clip-checkpoint',
                  clip_path, '--lora', lora_path)

    assert result.returncode == 0, result.stderr
    assert (f'lora:     {lora_layout} layout, {DEPTH} layers, rank {RANK}'
            in result.stdout)
    exported = torch.load(out, weights_only=True)
    assert list(exported) == list(clip_sd)
    kept = [
        k for k in clip_sd
        if not k.startswith('visual.') or k in ('visual.cls_token',
                                                'visual.pos_embed',
                                                'visual.head.weight',
                                                'visual.head.bias')
    ]
    assert all(torch.equal(exported[k], clip_sd[k]) for k in kept)

    model = tiny_open_clip(clip_name)
    load_original_eva_clip(model, exported)
    reference = lora_reference(
        visual_tower(clip_sd), lora, post_norm, out_type='cls_token')
    with torch.no_grad():
        embedding = model.encode_image(images)
        expected = torch.nn.functional.linear(
            reference(images)[0], clip_sd['visual.head.weight'],
            clip_sd['visual.head.bias'])
        base = tiny_open_clip(clip_name)
        load_original_eva_clip(base, clip_sd)
        assert not torch.allclose(
            base.encode_image(images), expected, atol=1e-3)
    torch.testing.assert_close(embedding, expected, atol=1e-5, rtol=0)


def test_eva_clip_keeps_clip_norm_pos_embed_and_dtype(tool, tmp_path):
    clip_sd = random_eva_clip_checkpoint('EVA01-g-14')
    clip_path, backbone, out = (tmp_path / 'clip.pt',
                                tmp_path / 'eva_vit_g.pth', tmp_path / 'o.pt')
    torch.save({k: v.half() for k, v in clip_sd.items()}, clip_path)
    lavis = visual_tower(
        clip_sd, drop=('head.', 'norm.'))  # eva_vit_g.pth may lack norm.*
    lavis['pos_embed'] = lavis['pos_embed'] + 1
    torch.save(lavis, backbone)

    result = tool('visft2evaclip.py', backbone, out, '--clip-checkpoint',
                  clip_path)

    assert result.returncode == 0, result.stderr
    assert ('norm.*: the backbone has no final LayerNorm; kept the CLIP '
            "checkpoint's") in result.stdout
    assert ("pos_embed: the backbone's differs from the CLIP checkpoint's"
            in result.stdout)
    assert ('the trunk stays torch.float32 (the CLIP checkpoint holds '
            'torch.float16)') in result.stdout
    exported = torch.load(out, weights_only=True)
    clip_sd = torch.load(clip_path, weights_only=True)
    trunk = {f'visual.{k}'
             for k in lavis} - {'visual.cls_token', 'visual.pos_embed'}
    assert all(
        torch.equal(exported[k], lavis[k[len('visual.'):]]) for k in trunk)
    assert all(
        torch.equal(exported[k], clip_sd[k]) for k in clip_sd
        if k not in trunk)


CLIP_MISMATCH_ERRORS = {
    'wider_mlp':
    'shape mismatches 1 (blocks.1.mlp.fc1.weight (64, 32) in the file vs '
    '(128, 32))',
    'deeper_clip':
    f'the backbone ({DEPTH} blocks) does not fit the visual tower of',
    'open_clip_layout':
    'not an original EVA-CLIP checkpoint (it has the open_clip/timm layout',
}


@pytest.mark.parametrize('change', list(CLIP_MISMATCH_ERRORS))
def test_eva_clip_mismatch_is_an_error(change, tool, tmp_path):
    clip_sd = random_eva_clip_checkpoint('EVA01-g-14')
    backbone, clip_path, out = (tmp_path / 'visual.pt', tmp_path / 'clip.pt',
                                tmp_path / 'o.pt')
    torch.save(visual_tower(clip_sd), backbone)
    if change == 'wider_mlp':
        clip_sd['visual.blocks.1.mlp.fc1.weight'] = torch.zeros(2 * FFN, C)
    elif change == 'deeper_clip':
        clip_sd.update({
            k.replace('blocks.0.', f'blocks.{DEPTH}.'): v
            for k, v in clip_sd.items() if k.startswith('visual.blocks.0.')
        })
    else:
        clip_sd = {
            k.replace('visual.', 'visual.trunk.'): v
            for k, v in clip_sd.items()
        }
    torch.save(clip_sd, clip_path)

    result = tool('visft2evaclip.py', backbone, out, '--clip-checkpoint',
                  clip_path)

    assert CLIP_MISMATCH_ERRORS[change] in assert_single_error(result)
    assert sorted(p.name
                  for p in tmp_path.iterdir()) == ['clip.pt', 'visual.pt']


# --------------------------------------------------- mmpretrain BLIP-2 BEiTViT
def blip2_beit(num_layers: int) -> BEiTViT:
    """``BEiTViT`` as mmpretrain's blip2 retrieval config builds it, tiny."""
    cfg = Config.fromfile(BLIP2_RETRIEVAL_CFG).model.vision_backbone
    assert cfg.pop(
        'type') == 'BEiTViT' and not cfg.final_norm and cfg.out_type == 'raw'
    cfg.update(
        arch=dict(
            embed_dims=C,
            num_layers=num_layers,
            num_heads=HEADS,
            feedforward_channels=FFN),
        img_size=IMG)
    beit = BEiTViT(**cfg)
    beit.eval()  # BEiTViT.train() returns None
    return beit


def test_mmpretrain_export_in_beit(tool, images, tmp_path):
    clip_sd = random_eva_clip_checkpoint('EVA01-g-14')
    clip_path, backbone, lora_path = (tmp_path / 'clip.pt',
                                      tmp_path / 'visual.pt',
                                      tmp_path / 'l.pt')
    out = tmp_path / 'beit.pth'
    torch.save(clip_sd, clip_path)
    torch.save(visual_tower(clip_sd, drop=('head.', 'cls_token')), backbone)
    lora = write_lora(lora_path, 'official')
    num_layers = DEPTH - 1

    result = tool('visft2mmpretrain.py', backbone, out, '--lora', lora_path,
                  '--cls-token-from', clip_path, '--num-layers', num_layers)

    assert result.returncode == 0, result.stderr
    assert (f'LoRA merged into block {DEPTH - 1} has no effect there'
            in result.stdout)
    assert (f'out_indices=-2 and read the output of layer {num_layers - 2}'
            in result.stdout)
    exported = torch.load(out, weights_only=True)
    assert 'layers.0.ffn.layers.0.0.weight' in exported
    assert 'layers.0.ln1.weight' in exported
    assert not [
        k for k in exported
        if k.startswith((f'layers.{num_layers}.', 'ln1.', 'ln2.'))
    ]
    beit = blip2_beit(num_layers)
    beit.load_state_dict(exported, strict=True)
    # Our EVAViT truncated to the same depth: the output of block num_layers-1,
    # before the final norm.
    reference = lora_reference(
        visual_tower(clip_sd),
        lora,
        out_type='raw',
        out_indices=num_layers - 1)
    with torch.no_grad():
        torch.testing.assert_close(
            beit(images)[0], reference(images)[0], atol=1e-5, rtol=0)


def test_to_beit_key():
    assert to_beit_key(
        'patch_embed.proj.weight') == 'patch_embed.projection.weight'
    assert to_beit_key('blocks.12.norm1.bias') == 'layers.12.ln1.bias'
    assert to_beit_key('blocks.3.attn.q_bias') == 'layers.3.attn.q_bias'
    assert to_beit_key(
        'blocks.3.mlp.fc2.weight') == 'layers.3.ffn.layers.1.weight'


def test_mmpretrain_too_many_layers(tool, tmp_path):
    backbone, out = tmp_path / 'visual.pt', tmp_path / 'beit.pth'
    torch.save(
        visual_tower(random_eva_clip_checkpoint('EVA01-g-14')), backbone)
    result = tool('visft2mmpretrain.py', backbone, out)  # default: 39 layers
    assert ('cannot export 39 blocks for mmpretrain BLIP-2 BEiTViT: the '
            f'backbone has {DEPTH}') \
        in assert_single_error(result)
    assert not out.exists()


# ------------------------------------------------------------------- LAVIS
def test_lavis_export_drops_last_block(tool, images, tmp_path):
    clip_sd = random_eva_clip_checkpoint('EVA01-g-14')
    backbone, lora_path, out = (tmp_path / 'eva_vit_g.pth',
                                tmp_path / 'lora.pth', tmp_path / 'o.pth')
    torch.save(visual_tower(clip_sd),
               backbone)  # LAVIS eva_vit_g.pth keeps its cls token
    lora = write_lora(lora_path, 'visft_mm')
    assert f'blocks.{DEPTH - 1}.attn.qkv' in lora.layers
    num_blocks = DEPTH - 1

    result = tool('visft2lavis.py', backbone, out, '--lora', lora_path,
                  '--num-blocks', num_blocks)

    assert result.returncode == 0, result.stderr
    assert 'cls:      the backbone' in result.stdout
    assert f'block {DEPTH - 1} and norm.* left out' in result.stdout
    exported = torch.load(out, weights_only=True)
    assert all(k.startswith('visual_encoder.') for k in exported)
    exported = {k[len('visual_encoder.'):]: v for k, v in exported.items()}
    expected_keys = [
        k for k in visual_tower(clip_sd)
        if not k.startswith(('norm.', f'blocks.{DEPTH - 1}.'))
    ]
    assert sorted(exported) == sorted(expected_keys)

    # LAVIS's VisionTransformer (cls token, pre-norm blocks, no final norm),
    # played by a timm Eva of the same structure reading the exported keys.
    lavis_like = Eva(
        img_size=IMG,
        patch_size=14,
        embed_dim=C,
        depth=num_blocks,
        num_heads=HEADS,
        mlp_ratio=FFN / C,
        num_classes=0,
        global_pool='',
        use_post_transformer_norm=False).eval()
    lavis_like.load_state_dict(exported, strict=True)
    reference = lora_reference(
        visual_tower(clip_sd),
        lora,
        out_type='raw',
        out_indices=num_blocks - 1)
    with torch.no_grad():
        torch.testing.assert_close(
            lavis_like.forward_features(images),
            reference(images)[0],
            atol=1e-5,
            rtol=0)


def test_lavis_without_cls_token_source(tool, tmp_path):
    backbone, out = tmp_path / 'visual.pt', tmp_path / 'blip2.pth'
    torch.save(
        visual_tower(
            random_eva_clip_checkpoint('EVA01-g-14'),
            drop=('head.', 'cls_token')), backbone)
    result = tool('visft2lavis.py', backbone, out, '--num-blocks', DEPTH - 1)
    line = assert_single_error(result)
    assert 'LAVIS BLIP-2 needs a cls token and the backbone has none' in line
    assert '--cls-token-from' in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['visual.pt']


def test_lavis_cls_token_source_without_cls_token(tool, tmp_path):
    backbone, out = tmp_path / 'visual.pt', tmp_path / 'blip2.pth'
    torch.save(
        visual_tower(
            random_eva_clip_checkpoint('EVA01-g-14'),
            drop=('head.', 'cls_token')), backbone)
    result = tool('visft2lavis.py', backbone, out, '--cls-token-from',
                  backbone)
    assert f'{backbone}: has no cls_token to take' in assert_single_error(
        result)
    assert not out.exists()


def test_blip2_targets_refuse_post_norm_eva_e():
    eva_e_shaped = {'patch_embed.proj.weight': torch.zeros(1792, 3, 1, 1)}
    with pytest.raises(
            CheckpointError, match='EVA-ViT-E, whose blocks are post-norm'):
        export_lavis(eva_e_shaped)


def test_recorded_post_norm_is_read_back(tool, tmp_path):
    """eva2visft.py and merge_lora.py record post_norm; a post-norm tower the
    width does not reveal (32 wide, not EVA-ViT-E's 1792) is then refused by
    the pre-norm BLIP-2 targets and by a pre-norm EVAViT."""
    src, converted = tmp_path / 'clip.pt', tmp_path / 'eva_e.pth'
    lora_path, merged = tmp_path / 'lora.pth', tmp_path / 'eva_e_visft.pth'
    torch.save(random_eva_clip_checkpoint('EVA02-E-14-plus'), src)
    write_lora(lora_path, 'visft_mm', post_norm=True)

    result = tool('eva2visft.py', src, converted, '--post-norm')
    assert result.returncode == 0, result.stderr
    assert 'post_norm: True (--post-norm)' in result.stdout
    result = tool('merge_lora.py', converted, lora_path, merged)
    assert result.returncode == 0, result.stderr

    for backbone in (converted, merged):
        for script in ('visft2lavis.py', 'visft2mmpretrain.py'):
            result = tool(script, backbone, tmp_path / 'out.pth')
            assert 'the backbone file records post-norm blocks' in \
                assert_single_error(result)
    assert not (tmp_path / 'out.pth').exists()
    for backbone in (converted, merged):
        pre_norm = EVAViT(
            arch=arch(post_norm=False),
            pretrain_img_size=IMG,
            with_cls_token=True,
            init_cfg=dict(type='Pretrained', checkpoint=str(backbone)))
        with pytest.raises(
                CheckpointError,
                match='records post-norm blocks, the model has pre-norm'):
            pre_norm.init_weights()
        EVAViT(
            arch=arch(post_norm=True),
            pretrain_img_size=IMG,
            with_cls_token=True,
            init_cfg=dict(type='Pretrained',
                          checkpoint=str(backbone))).init_weights()


def test_lavis_cls_token_from_overrides_the_backbone():
    backbone = visual_tower(random_eva_clip_checkpoint('EVA01-g-14'))
    other = torch.ones(1, 1, C)
    export = export_lavis(backbone, num_blocks=DEPTH, cls_token=other)
    assert torch.equal(export.state_dict['visual_encoder.cls_token'], other)
    assert ("cls_token: the backbone's differs from --cls-token-from; used "
            'the latter') \
        in export.notes


def test_backbone_with_unmerged_lora_is_refused(tmp_path):
    """A file holding base weights and LoRA tensors would otherwise export
    (or load) as the base model under a ViSFT name."""
    from visft_mm.checkpoints.eva_layouts import (load_backbone,
                                                  load_eva_weights)
    from visft_mm.models import EVAViT, LoRAModel
    arch = dict(
        embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
    lora_model = LoRAModel(
        module=dict(type='visft_mm.EVAViT', arch=arch, pretrain_img_size=28),
        targets=[dict(type='qkv', slices='qv')],
        rank=4,
        alpha=1)
    path = tmp_path / 'base_and_lora.pth'
    torch.save(
        {
            k.replace('module.', '', 1): v
            for k, v in lora_model.state_dict().items()
        }, path)
    with pytest.raises(CheckpointError, match='LoRA tensors.*merge_lora.py'):
        load_backbone(path)
    with pytest.raises(CheckpointError, match='LoRA tensors.*merge_lora.py'):
        load_eva_weights(EVAViT(arch=arch, pretrain_img_size=28), path)


def test_lavis_export_resized_for_a_larger_input(tool, tmp_path):
    """--img-size resizes the position table the way LAVIS does, so a model
    built for that input size gives EVAViT's features at that size."""
    clip_sd = random_eva_clip_checkpoint('EVA01-g-14')
    backbone, out = tmp_path / 'eva_vit_g.pth', tmp_path / 'o.pth'
    torch.save(visual_tower(clip_sd), backbone)
    big = IMG + 28  # two more patches per side

    result = tool('visft2lavis.py', backbone, out, '--num-blocks', DEPTH - 1,
                  '--img-size', big)

    assert result.returncode == 0, result.stderr
    assert 'pos_embed resized from 4x4 to 6x6 patches' in result.stdout
    exported = {
        k[len('visual_encoder.'):]: v
        for k, v in torch.load(out, weights_only=True).items()
    }
    lavis_like = Eva(
        img_size=big,
        patch_size=14,
        embed_dim=C,
        depth=DEPTH - 1,
        num_heads=HEADS,
        mlp_ratio=FFN / C,
        num_classes=0,
        global_pool='',
        use_post_transformer_norm=False).eval()
    lavis_like.load_state_dict(exported, strict=True)
    reference = EVAViT(
        arch=arch(),
        pretrain_img_size=IMG,
        with_cls_token=True,
        out_type='raw',
        out_indices=DEPTH - 2).eval()
    reference.load_state_dict(visual_tower(clip_sd))
    images = torch.randn(
        2, 3, big, big, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            lavis_like.forward_features(images),
            reference(images)[0],
            atol=1e-5,
            rtol=0)
