"""LoRA layer and wrapper: exact merge, no double update in eval, LoRA in a
frozen backbone, state dicts scoped to the wrapped module."""
import copy
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tiny import NARROW_VIT, tiny_vit_checkpoint

from visft_mm.checkpoints.lora_files import RUN_CHECKPOINT_PREFIX
from visft_mm.models import EVAViT, FrozenBackbone, LoRALinear, LoRAModel
from visft_mm.models.backbones import eva_vit
from visft_mm.models.peft.lora import fused_lora_delta, parse_slices

C = NARROW_VIT['embed_dims']


def _randomise_lora(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith('lora_B'):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def _tiny_lora_vit(**kwargs) -> LoRAModel:
    """LoRA in a frozen NARROW_VIT of seeded random weights."""
    torch.manual_seed(0)
    vit = EVAViT(arch=NARROW_VIT, pretrain_img_size=56)
    vit.init_weights()
    model = LoRAModel(
        FrozenBackbone(vit, random_weights=True), rank=4, alpha=2, **kwargs)
    _randomise_lora(model)
    return model


def test_parse_slices():
    assert parse_slices('qv') == (True, False, True)
    assert parse_slices('k') == (False, True, False)
    assert parse_slices(None) is None
    with pytest.raises(ValueError):
        parse_slices('qx')


def test_official_merge_formula():
    """ΔW_q = B[:C]·A[:r] and ΔW_v = B[C:]·A[r:], times alpha/r; the k rows
    stay untouched."""
    r = 4
    base = nn.Linear(C, 3 * C, bias=False)
    layer = LoRALinear(base, rank=r, alpha=1, slices='qv')
    assert layer.lora_A.shape == (2 * r, C) and layer.lora_B.shape == (2 * C,
                                                                       r)
    _randomise_lora(layer)
    A, B = layer.lora_A.detach(), layer.lora_B.detach()
    delta = layer.delta_weight()
    torch.testing.assert_close(delta[:C], B[:C] @ A[:r] / r)
    torch.testing.assert_close(delta[C:2 * C], torch.zeros(C, C))
    torch.testing.assert_close(delta[2 * C:], B[C:] @ A[r:] / r)


def test_matches_loralib_merged_linear():
    loralib = pytest.importorskip('loralib')
    r = 4
    torch.manual_seed(0)
    reference = loralib.MergedLinear(
        C,
        3 * C,
        r=r,
        lora_alpha=1,
        enable_lora=[True, False, True],
        bias=False)
    _randomise_lora(reference)
    ours = LoRALinear(
        nn.Linear(C, 3 * C, bias=False), rank=r, alpha=1, slices='qv')
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 5, C)
    reference.train()
    torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=1e-5)
    reference.eval()  # loralib merges into .weight on eval
    ours.merge()
    torch.testing.assert_close(
        ours.weight, reference.weight, atol=1e-6, rtol=1e-5)


def test_shares_base_weight_and_keeps_key_names():
    base = nn.Linear(C, 3 * C)
    layer = LoRALinear(base, rank=2, slices='qv')
    assert layer.weight is base.weight and layer.bias is base.bias
    assert set(layer.state_dict()) == {'weight', 'bias', 'lora_A', 'lora_B'}
    assert isinstance(layer, nn.Linear)


@pytest.mark.parametrize('slices', ['qv', 'qkv', 'k', None])
def test_train_eval_merged_unmerged_agree(slices):
    model = _tiny_lora_vit(targets=[dict(type='qkv', slices=slices)])
    x = torch.randn(2, 3, 56, 70)
    model.train()
    train_out = model(x)[0]
    model.eval()
    eval_out = model(x)[0]
    model.merge()
    merged_out = model(x)[0]
    model.eval()  # switching modes again must not re-apply the update
    merged_again = model(x)[0]
    model.unmerge()
    unmerged_out = model(x)[0]
    for out in (eval_out, merged_out, merged_again, unmerged_out):
        torch.testing.assert_close(out, train_out, atol=1e-5, rtol=1e-5)
    # the update is not a no-op: without LoRA the output differs
    plain = copy.deepcopy(model.network)
    for layer in plain.modules():
        if isinstance(layer, LoRALinear):
            nn.init.zeros_(layer.lora_B)
    assert not torch.allclose(plain(x)[0], train_out, atol=1e-3)


def test_merge_unmerge_restores_weight():
    model = _tiny_lora_vit()
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    model.merge()
    qkv = 'blocks.0.attn.qkv.weight'
    assert not torch.allclose(model.network.state_dict()[qkv], before[qkv])
    model.unmerge()
    for key, value in model.network.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=1e-6, rtol=1e-6)


def test_merge_and_unmerge_twice_change_the_weight_once():
    """A second merge() must not add the update again, nor a second
    unmerge() subtract it again."""
    base = nn.Linear(C, 3 * C)
    original = base.weight.detach().clone()
    layer = LoRALinear(base, rank=4, alpha=2, slices='qv').eval()
    _randomise_lora(layer)
    x = torch.randn(2, 5, C)
    with torch.no_grad():
        unmerged_out = layer(x)
        layer.merge()
        merged_weight, merged_out = layer.weight.clone(), layer(x)
        layer.merge()
        torch.testing.assert_close(layer.weight, merged_weight)
        torch.testing.assert_close(layer(x), merged_out)
        torch.testing.assert_close(merged_out, unmerged_out)
        layer.unmerge()
        layer.unmerge()
        torch.testing.assert_close(layer.weight, original)
        torch.testing.assert_close(layer(x), unmerged_out)
    assert not torch.allclose(merged_weight, original, atol=1e-3)


def test_merged_layer_refuses_training():
    model = _tiny_lora_vit()
    model.merge()
    model.train()
    with pytest.raises(RuntimeError, match='unmerge'):
        model(torch.randn(1, 3, 56, 56))


def test_only_lora_trains_and_gets_gradients():
    model = _tiny_lora_vit(drop_rate=0.1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.rsplit('.', 1)[-1] in ('lora_A', 'lora_B') for n in trainable)
    assert len(trainable) == 2 * 2  # 2 blocks × (A, B)
    model.train()
    model(torch.randn(2, 3, 56, 56))[0].square().mean().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name in trainable), name


def test_learns_a_low_rank_change_of_q_and_v():
    """Stage 2's premise: LoRA on q and v, trained on features alone, imitates
    a teacher whose q and v projections differ from the frozen weights by a
    rank-2 change."""
    torch.manual_seed(0)
    teacher = EVAViT(arch=NARROW_VIT, pretrain_img_size=56)
    student = LoRAModel(
        FrozenBackbone(copy.deepcopy(teacher), random_weights=True),
        rank=4,
        alpha=4)
    with torch.no_grad():
        for block in teacher.blocks:
            for rows in (slice(0, C), slice(2 * C, 3 * C)):
                change = torch.randn(C, 2) @ torch.randn(2, C)
                block.attn.qkv.weight[rows] += 0.15**2 * change
    teacher.eval()
    held_out = torch.randn(8, 3, 56, 56)

    def held_out_error() -> torch.Tensor:
        student.eval()
        with torch.no_grad():
            return F.mse_loss(student(held_out)[0], teacher(held_out)[0])

    before = held_out_error()
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=1e-2)
    student.train()
    for _ in range(50):
        images = torch.randn(8, 3, 56, 56)
        with torch.no_grad():
            target = teacher(images)[0]
        loss = F.mse_loss(student(images)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert held_out_error() < 0.25 * before


def test_lora_layers_follow_train_mode_inside_frozen_backbone(tmp_path):
    """The frozen ViT stays in eval mode; the LoRA layers in it (and their
    dropout) follow train() and eval()."""
    vit = EVAViT(
        arch=NARROW_VIT,
        pretrain_img_size=56,
        init_cfg=dict(
            type='Pretrained',
            checkpoint=tiny_vit_checkpoint(tmp_path, NARROW_VIT, 56)))
    model = LoRAModel(FrozenBackbone(vit), rank=2, drop_rate=0.5)
    layers = list(model.lora_layers.values())
    model.train()
    assert all(layer.training and layer.lora_dropout.training
               for layer in layers)
    assert not vit.training and not vit.blocks[0].attn.proj.training
    model.eval()
    assert not any(layer.training or layer.lora_dropout.training
                   for layer in layers)
    model.train()  # and back
    assert all(layer.training for layer in layers) and not vit.training


@pytest.mark.parametrize('frozen', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_gradient_checkpointing_gives_same_lora_grads(frozen, dtype,
                                                      monkeypatch):
    """Checkpointing takes effect (once per block) also for a frozen backbone,
    which stays in eval mode while its LoRA trains, and under bf16 autocast."""
    checkpointed = []
    checkpoint = eva_vit.cp.checkpoint

    def counting_checkpoint(block, *args, **kwargs):
        checkpointed.append(block)
        return checkpoint(block, *args, **kwargs)

    monkeypatch.setattr(eva_vit.cp, 'checkpoint', counting_checkpoint)
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        vit = EVAViT(arch=NARROW_VIT, pretrain_img_size=56, with_cp=with_cp)
        vit.init_weights()
        model = LoRAModel(
            FrozenBackbone(vit, random_weights=True) if frozen else vit,
            rank=4)
        _randomise_lora(model)
        model.train()
        with torch.autocast(
                'cpu', dtype=dtype, enabled=dtype != torch.float32):
            out = model(
                torch.randn(
                    2, 3, 56, 56, generator=torch.Generator().manual_seed(1)))
        out[0].float().sum().backward()
        grads.append({
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.requires_grad
        })
    assert len(checkpointed) == NARROW_VIT['num_layers']
    tolerance = dict(
        atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(
            atol=0.05, rtol=0.05)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], **tolerance)


def test_no_target_matches():
    with pytest.raises(ValueError, match='No layer'):
        LoRAModel(
            EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
            targets=[dict(type='nope')])


def test_target_must_be_linear():
    with pytest.raises(TypeError, match='nn.Linear'):
        LoRAModel(
            EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
            targets=[dict(type='norm1')])


def test_per_target_settings():
    model = LoRAModel(
        EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
        targets=[
            dict(type=r'blocks\.0\.attn\.qkv', rank=2, slices='q'),
            dict(type='fc1', rank=3, alpha=6)
        ],
        rank=8)
    config = model.lora_config()
    assert config['blocks.0.attn.qkv'] == dict(
        rank=2, alpha=1., slices=(True, False, False))
    assert config['blocks.1.mlp.fc1'] == dict(rank=3, alpha=6, slices=None)
    assert 'blocks.1.attn.qkv' not in config


class _TwoPart(nn.Module):
    """A head registered before the LoRA backbone and one after it; the
    backbone is stage 2's: LoRA in a frozen, pretrained ViT."""

    def __init__(self, directory):
        super().__init__()
        self.head_before = nn.Linear(4, 4)
        vit = dict(
            type='EVAViT',
            arch=NARROW_VIT,
            pretrain_img_size=56,
            init_cfg=dict(
                type='Pretrained',
                checkpoint=tiny_vit_checkpoint(directory, NARROW_VIT, 56)))
        self.backbone = LoRAModel(
            dict(type='FrozenBackbone', module=vit), rank=4, alpha=2)
        _randomise_lora(self.backbone)
        self.head_after = nn.Linear(4, 4)


def test_frozen_backbone_state_dict_keeps_lora_and_other_modules(tmp_path):
    model = _TwoPart(tmp_path)
    keys = set(model.state_dict())
    assert {'head_before.weight', 'head_before.bias',
            'head_after.weight'} <= keys
    backbone_keys = {k for k in keys if k.startswith('backbone.')}
    assert backbone_keys == {
        f'backbone.module.module.blocks.{i}.attn.qkv.lora_{m}'
        for i in range(2)
        for m in 'AB'
    }
    assert 'backbone.' + model.backbone.network_prefix == RUN_CHECKPOINT_PREFIX


def test_lora_checkpoint_round_trip_and_strictness(tmp_path):
    source = _TwoPart(tmp_path)
    target = _TwoPart(tmp_path)
    network = target.backbone.network
    nn.init.zeros_(network.blocks[0].attn.qkv.lora_B)
    with torch.no_grad():  # other frozen weights than the source's
        network.blocks[0].attn.qkv.weight.add_(1.0)
    frozen_before = network.blocks[0].attn.qkv.weight.clone()
    state = source.state_dict()
    target.load_state_dict(state, strict=True)
    torch.testing.assert_close(
        network.blocks[0].attn.qkv.lora_B,
        source.backbone.network.blocks[0].attn.qkv.lora_B)
    # frozen weights come from the target's own init, not from the file
    torch.testing.assert_close(network.blocks[0].attn.qkv.weight,
                               frozen_before)
    # other modules are still checked strictly, and so are LoRA tensors
    for missing in ('head_before.weight',
                    'backbone.module.module.blocks.1.attn.qkv.lora_A'):
        broken = dict(state)
        del broken[missing]
        with pytest.raises(RuntimeError, match='Missing key'):
            target.load_state_dict(broken, strict=True)


def test_partial_frozen_weights_are_reported(tmp_path):
    model = _TwoPart(tmp_path)
    state = model.state_dict()
    state['backbone.module.module.pos_embed'] = (
        model.backbone.network.pos_embed.detach())
    with pytest.raises(RuntimeError, match='Missing key'):
        model.load_state_dict(state, strict=True)


def test_lora_of_a_trainable_module_saves_everything():
    model = LoRAModel(EVAViT(arch=NARROW_VIT, pretrain_img_size=56), rank=2)
    assert 'module.blocks.0.attn.qkv.weight' in model.state_dict()


def test_logs_the_layers_it_adapts(log_records):
    LoRAModel(
        EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
        targets=[dict(type=r'blocks\.1\.attn\.qkv', slices='qv')],
        rank=2)
    assert [(r.levelno, r.getMessage()) for r in log_records
            ] == [(logging.INFO,
                   'LoRAModel: LoRA on 1 layers of EVAViT: blocks.1.attn.qkv')]


@pytest.mark.parametrize('slices', ['qv', (True, False)])
def test_slices_need_equal_parts(slices):
    """fc1 is NARROW_VIT's 64 features: not three slices, two are fine."""
    if slices == 'qv':
        with pytest.raises(ValueError) as error:
            LoRAModel(
                EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
                targets=[dict(type='fc1', slices=slices)])
        assert "'blocks.0.mlp.fc1'" in str(error.value)
        assert 'out_features is 64' in str(error.value)
    else:
        LoRAModel(
            EVAViT(arch=NARROW_VIT, pretrain_img_size=56),
            targets=[dict(type='fc1', slices=slices)])


def test_lora_state_dict_round_trip():
    source = _tiny_lora_vit()
    target = _tiny_lora_vit()  # the same frozen weights as the source
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # and other values in every LoRA tensor
        for name, param in target.module.named_parameters():
            if name.endswith(('lora_A', 'lora_B')):
                param.copy_(torch.randn(param.shape, generator=generator))
    x = torch.randn(1, 3, 56, 56)
    assert not torch.allclose(target(x)[0], source(x)[0], atol=1e-3)
    lora = source.lora_state_dict()
    assert set(lora) == {
        f'blocks.{i}.attn.qkv.lora_{m}'
        for i in range(2)
        for m in 'AB'
    }
    target.load_lora_state_dict(lora)
    torch.testing.assert_close(target(x)[0], source(x)[0])
    with pytest.raises(KeyError, match='missing'):
        target.load_lora_state_dict({
            k: v
            for k, v in lora.items() if 'blocks.0' not in k
        })


def test_fused_delta_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fused_lora_delta(
            torch.zeros(8, C), torch.zeros(2 * C, 3), (True, False, True), 1.)
