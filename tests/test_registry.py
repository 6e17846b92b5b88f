"""The visft_mm scope: an mmdet config builds our backbone by prefix, with no
custom_imports, and the detector trains with it frozen."""
import textwrap

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tiny import TINY_VIT, tiny_vit_checkpoint

CONFIG = textwrap.dedent(f"""
    _base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
    model = dict(
        backbone=dict(_delete_=True, type='visft_mm.FrozenBackbone',
                      module=dict(type='visft_mm.EVAViT', arch={TINY_VIT!r},
                                  pretrain_img_size=56,
                                  init_cfg=dict(type='Pretrained',
                                                checkpoint=CHECKPOINT))),
        neck=dict(in_channels=[{TINY_VIT['embed_dims']}]),
        encoder=dict(num_layers=1),
        decoder=dict(num_layers=1))
""")


def test_mmdet_config_builds_and_trains_with_evavit(tmp_path):
    path = tmp_path / 'detr_evavit.py'
    checkpoint = tiny_vit_checkpoint(tmp_path, TINY_VIT, 56)
    path.write_text(CONFIG.replace('CHECKPOINT', repr(checkpoint)))
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmdet' and 'custom_imports' not in cfg

    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    from visft_mm.models import FrozenBackbone
    detector = MODELS.build(cfg.model)
    assert isinstance(detector.backbone, FrozenBackbone)
    # the pretrained ViT, without init_weights (as in mmdet's tools/test.py)
    pretrained = torch.load(checkpoint)
    assert all(
        torch.equal(v, pretrained[k])
        for k, v in detector.backbone.module.state_dict().items())
    assert not any(k.startswith('backbone.') for k in detector.state_dict())

    packed = demo_mm_inputs(2, [[3, 84, 112], [3, 70, 98]], num_classes=80)
    data = detector.data_preprocessor(packed, True)
    detector.train()
    losses = detector.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None for p in detector.backbone.parameters())
    assert detector.neck.convs[0].conv.weight.grad is not None


def test_scope_resolves_mmdet_modules_without_prefix():
    from mmdet.models.dense_heads import DETRHead

    from visft_mm.registry import MODELS
    assert MODELS.get('DETRHead') is DETRHead
    assert MODELS.get(
        'EVAViT').__module__ == 'visft_mm.models.backbones.eva_vit'


def test_every_mmdet_registry_has_a_visft_mm_child():
    """Builds in the visft_mm scope (the Runner's optimizer, weight
    initialisers, visualizer...) must find mmdet's registries, not fall back
    to mmengine's root with a warning."""
    import mmdet.registry as mmdet_registry
    from mmengine.registry import Registry

    import visft_mm.registry as ours
    children = {
        reg.parent.name: reg
        for reg in vars(ours).values()
        if isinstance(reg, Registry) and reg.scope == 'visft_mm'
    }
    for name, registry in vars(mmdet_registry).items():
        if isinstance(registry, Registry) and registry.scope == 'mmdet':
            assert registry.name in children, (
                f'visft_mm has no child of mmdet {name}')
            assert children[registry.name].parent is registry


def test_prefix_resolves_from_mmseg_and_mmpretrain_scopes():
    """A config in mmseg's or mmpretrain's world names our modules by
    prefix."""
    import mmpretrain.registry
    import mmseg.registry
    from mmengine.registry import DefaultScope

    from visft_mm.evaluation import CaptionMetric
    from visft_mm.models import EVAViT
    for scope, registry in (('mmseg', mmseg.registry), ('mmpretrain',
                                                        mmpretrain.registry)):
        with DefaultScope.overwrite_default_scope(scope):
            backbone = registry.MODELS.build(
                dict(
                    type='visft_mm.EVAViT',
                    arch=TINY_VIT,
                    pretrain_img_size=28))
            assert isinstance(backbone, EVAViT)
            assert registry.METRICS.get(
                'visft_mm.CaptionMetric') is CaptionMetric
