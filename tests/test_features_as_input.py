"""An mmdet detector whose backbone is FeaturesAsInput, fed the shared ViT's
features, computes exactly what the same detector with the ViT inside does."""
import copy

import pytest
import torch
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from tiny import TINY_VIT

from visft_mm.models import EVAViT, FeaturesAsInput


def test_detr_on_shared_features_equals_detr_with_vit_inside():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = get_config('mmdet::detr/detr_r50_8xb2-150e_coco.py').model
    cfg.backbone = dict(
        type='visft_mm.EVAViT', arch=TINY_VIT, pretrain_img_size=56)
    cfg.neck.in_channels = [TINY_VIT['embed_dims']]
    cfg.encoder.num_layers = cfg.decoder.num_layers = 1
    torch.manual_seed(0)
    with_vit = MODELS.build(copy.deepcopy(cfg))
    cfg.backbone = dict(type='visft_mm.FeaturesAsInput')
    on_features = MODELS.build(cfg)
    on_features.load_state_dict({
        k: v
        for k, v in with_vit.state_dict().items()
        if not k.startswith('backbone.')
    })
    with_vit.eval(), on_features.eval(
    )  # no dropout: the two runs must match exactly

    packed = demo_mm_inputs(2, [[3, 84, 112], [3, 70, 98]], num_classes=80)
    data = with_vit.data_preprocessor(packed, True)
    with torch.no_grad():
        expected = with_vit.loss(data['inputs'], data['data_samples'])
        feats = with_vit.backbone(data['inputs'])
        got = on_features.loss(feats, data['data_samples'])
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_refuses_images():
    with pytest.raises(TypeError, match='shared backbone features'):
        FeaturesAsInput()(torch.zeros(1, 3, 28, 28))
    vit = EVAViT(arch=TINY_VIT, pretrain_img_size=56)
    feats = vit(torch.zeros(1, 3, 28, 28))
    assert FeaturesAsInput()(feats) == feats
