"""Detection and segmentation task-head configs (configs/_base_/models): they
build as mmdet models on FeaturesAsInput, keep the paper's numbers, differ from
mmdet's reference configs only where intended, and train and predict on a
tiny EVAViT's features for demo images run through the real mmdet pipeline."""
import json
from pathlib import Path

import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.losses import FocalLoss
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from tiny import TINY_VIT

from visft_mm.demo.demo_coco import DEMO_CLASSES, generate_demo_coco
from visft_mm.models import (AnyDeviceFocalLoss,
                             AnyDeviceMultiScaleDeformableAttention, EVAViT,
                             FeaturesAsInput, FrozenBackbone)
from visft_mm.normalisation import CLIP_MEAN, CLIP_STD

MODEL_DIR = Path(
    __file__).resolve().parents[1] / 'configs' / '_base_' / 'models'
FRAGMENTS = {  # file -> its model variable
    'visft_detr.py': 'detection_model',
    'visft_detr_demo.py': 'detection_model',
    'visft_dino_demo.py': 'detection_model',
    'visft_mask2former.py': 'segmentation_model',
    'visft_mask2former_demo.py': 'segmentation_model',
}
# visft_mm's any-device modules in the fragments, and the mmdet modules they
# stand for
MMDET_TYPES = {
    'visft_mm.AnyDeviceDINO': 'DINO',
    'visft_mm.AnyDeviceFocalLoss': 'FocalLoss',
    'visft_mm.AnyDeviceMSDeformAttnPixelDecoder': 'MSDeformAttnPixelDecoder',
}
DEFORMABLE_ATTENTION_FRAGMENTS = [
    'visft_dino_demo.py', 'visft_mask2former.py', 'visft_mask2former_demo.py'
]
IMG_SIZE, RESIZED = 96, 80  # resized images are padded to 84 = 6 patches


def load_fragment(name: str):
    return Config.fromfile(str(MODEL_DIR / name))[FRAGMENTS[name]]


def build(cfg):
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg)
    model.init_weights(
    )  # DINO's level_embed is uninitialised memory until then
    return model


def shrink(cfg):
    """The fragment on the tiny ViT, one layer per transformer, few points."""
    if cfg.type == 'Mask2Former':
        head = cfg.panoptic_head
        head.in_channels = [TINY_VIT['embed_dims']]
        head.pixel_decoder.encoder.num_layers = 1
        head.transformer_decoder.num_layers = 1
        cfg.train_cfg.num_points = 256
    else:
        cfg.neck.in_channels = [TINY_VIT['embed_dims']]
        cfg.encoder.num_layers = cfg.decoder.num_layers = 1
    return cfg


def with_mmdet_types(cfg):
    """A copy of the fragment that builds mmdet's modules in place of
    visft_mm's any-device ones."""
    if isinstance(cfg, dict):
        return type(cfg)({
            k:
            MMDET_TYPES.get(v, v) if k == 'type' else with_mmdet_types(v)
            for k, v in cfg.items()
        })
    if isinstance(cfg, list):
        return [with_mmdet_types(v) for v in cfg]
    return cfg


def flatten(cfg, prefix=''):
    """{dotted path: value} of a config dict, ignoring ``_scope_`` keys."""
    flat = {}
    for key, value in cfg.items():
        if key == '_scope_':
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def differing_paths(ours, reference):
    a, b = flatten(ours), flatten(reference)
    return {
        k
        for k in a.keys() | b.keys()
        if not k.startswith('backbone.') and a.get(k, None) != b.get(k, None)
    }


@pytest.mark.parametrize('name', sorted(FRAGMENTS))
def test_fragment_builds_on_shared_features(name):
    cfg = load_fragment(name)
    assert cfg.backbone == dict(type='visft_mm.FeaturesAsInput')
    preprocessor = cfg.data_preprocessor
    assert preprocessor.pad_size_divisor == 14 and preprocessor.bgr_to_rgb
    assert preprocessor.mean == pytest.approx([v * 255 for v in CLIP_MEAN])
    assert preprocessor.std == pytest.approx([v * 255 for v in CLIP_STD])
    assert isinstance(build(cfg).backbone, FeaturesAsInput)


def test_detr_has_the_paper_numbers():
    model = build(load_fragment('visft_detr.py'))
    assert model.num_queries == 100
    assert len(model.encoder.layers) == 6 and len(model.decoder.layers) == 6
    # aux losses on every decoder layer
    assert model.decoder.return_intermediate
    for layer in (*model.encoder.layers, *model.decoder.layers):
        assert layer.ffn.layers[0][0].out_features == 1024
        assert layer.ffn.layers[0][2].p == 0.1  # FFN dropout
    assert model.neck.convs[0].conv.in_channels == 1408
    assert model.bbox_head.num_classes == 80
    assert model.bbox_head.loss_cls.class_weight[-1] == 0.1  # no-object weight


def test_mask2former_has_the_paper_numbers():
    model = build(load_fragment('visft_mask2former.py'))
    head = model.panoptic_head
    assert head.num_queries == 100 and head.num_classes == 80
    assert head.num_transformer_feat_level == 1
    assert len(head.transformer_decoder.layers) == 9
    assert head.transformer_decoder.layers[0].ffn.layers[0][
        0].out_features == 1024
    decoder = head.pixel_decoder
    assert decoder.strides == [14] and decoder.num_encoder_levels == 1
    assert len(decoder.encoder.layers) == 6
    assert decoder.encoder.layers[0].ffn.layers[0][0].out_features == 512
    assert decoder.input_convs[0].conv.in_channels == 1408
    assert len(
        decoder.lateral_convs) == 0  # mmdet: no extra conv pair on one level
    assert (head.num_points, head.oversample_ratio,
            head.importance_sample_ratio) == (12544, 3.0, 0.75)
    assert head.class_weight == [1.0] * 80 + [0.1]


@pytest.mark.parametrize(
    'name',
    ['visft_detr_demo.py', 'visft_dino_demo.py', 'visft_mask2former_demo.py'])
def test_demo_fragments_fit_the_demo(name):
    model = build(load_fragment(name))
    if FRAGMENTS[name] == 'segmentation_model':
        head = model.panoptic_head
        assert head.num_classes == len(DEMO_CLASSES)
        assert head.class_weight == [1.0] * len(DEMO_CLASSES) + [0.1]
        assert model.panoptic_fusion_head.num_classes == len(DEMO_CLASSES)
        assert head.pixel_decoder.input_convs[0].conv.in_channels == 192
    else:
        assert model.bbox_head.num_classes == len(DEMO_CLASSES)
        assert model.neck.convs[0].conv.in_channels == 192


def test_detr_differs_from_mmdet_detr_only_where_intended():
    ours = load_fragment('visft_detr.py')
    reference = get_config('mmdet::detr/detr_r50_8xb2-150e_coco.py').model
    ffn = 'layer_cfg.ffn_cfg.feedforward_channels'
    assert differing_paths(ours, reference) == {
        'data_preprocessor.mean', 'data_preprocessor.std',
        'data_preprocessor.pad_size_divisor', 'neck.in_channels',
        f'encoder.{ffn}', f'decoder.{ffn}'
    }


def test_mask2former_differs_from_mmdet_mask2former_only_where_intended():
    ours = load_fragment('visft_mask2former.py')
    reference = get_config(
        'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py').model
    head, pixel = 'panoptic_head', 'panoptic_head.pixel_decoder'
    assert differing_paths(ours, reference) == {
        'data_preprocessor.mean',
        'data_preprocessor.std',
        'data_preprocessor.pad_size_divisor',
        'data_preprocessor.batch_augments',
        # mmdet's leftover; unused with pad_seg=False
        'data_preprocessor.seg_pad_value',
        f'{head}.in_channels',
        f'{head}.strides',
        f'{head}.num_transformer_feat_level',
        # mmdet's pixel decoder, with attention that runs on any device
        f'{pixel}.type',
        f'{pixel}.strides',
        f'{pixel}.num_outs',
        f'{pixel}.encoder.layer_cfg.self_attn_cfg.num_levels',
        f'{pixel}.encoder.layer_cfg.ffn_cfg.feedforward_channels',
        f'{head}.transformer_decoder.layer_cfg.ffn_cfg.feedforward_channels'
    }


@pytest.mark.parametrize('name', DEFORMABLE_ATTENTION_FRAGMENTS)
def test_fragments_build_attention_and_losses_that_run_on_any_device(name):
    model = build(load_fragment(name))
    attentions = [
        m for m in model.modules()
        if isinstance(m, MultiScaleDeformableAttention)
    ]
    assert attentions
    assert all(
        type(m) is AnyDeviceMultiScaleDeformableAttention for m in attentions)
    if name == 'visft_dino_demo.py':
        assert type(model.bbox_head.loss_cls) is AnyDeviceFocalLoss
    assert not any(type(m) is FocalLoss for m in model.modules())


@pytest.mark.parametrize('name', DEFORMABLE_ATTENTION_FRAGMENTS)
def test_any_device_modules_load_state_dicts_of_mmdets_modules(name):
    cfg = shrink(load_fragment(name))
    mmdet_model = build(with_mmdet_types(cfg))
    assert any(
        type(m) is MultiScaleDeformableAttention
        for m in mmdet_model.modules())
    model = build(cfg)
    assert list(model.state_dict()) == list(mmdet_model.state_dict())
    model.load_state_dict(mmdet_model.state_dict(), strict=True)


@pytest.mark.parametrize('bases',
                         [('visft_detr.py', 'visft_mask2former.py'),
                          ('visft_dino_demo.py', 'visft_mask2former_demo.py')])
def test_one_config_inherits_detection_and_segmentation(tmp_path, bases):
    leaf = tmp_path / 'both.py'
    leaf.write_text(f'_base_ = {[str(MODEL_DIR / b) for b in bases]!r}\n')
    cfg = Config.fromfile(str(leaf))
    assert set(cfg.keys()) == {'detection_model', 'segmentation_model'}


@pytest.fixture(scope='module')
def demo_dataset(tmp_path_factory):
    """CocoDataset over generated demo images, through mmdet's own pipeline."""
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    root = tmp_path_factory.mktemp('demo_coco')
    generate_demo_coco(
        str(root), num_train=4, num_val=0, img_size=IMG_SIZE, seed=0)
    return DATASETS.build(
        dict(
            type='CocoDataset',
            data_root=str(root),
            metainfo=dict(classes=DEMO_CLASSES),
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='Resize', scale=(RESIZED, RESIZED), keep_ratio=True),
                dict(type='PackDetInputs')
            ]))


@pytest.fixture(scope='module')
def vit():
    torch.manual_seed(0)
    model = EVAViT(arch=TINY_VIT, pretrain_img_size=84)
    model.init_weights()
    return FrozenBackbone(model, random_weights=True).eval()


def test_labels_are_contiguous_from_zero(demo_dataset):
    ann = json.loads((Path(demo_dataset.ann_file)).read_text())
    sample = demo_dataset[0]['data_samples']
    image_id = sample.img_id
    category_ids = [
        a['category_id'] for a in ann['annotations']
        if a['image_id'] == image_id
    ]
    labels = sample.gt_instances.labels
    assert labels.tolist() == [c - 1
                               for c in category_ids]  # COCO ids 1..4 -> 0..3
    assert 0 <= labels.min() and labels.max() < len(DEMO_CLASSES)
    assert demo_dataset.cat2label == {
        i + 1: i
        for i in range(len(DEMO_CLASSES))
    }


@pytest.mark.parametrize('name', sorted(FRAGMENTS))
def test_loss_and_predict_on_tiny_vit_features(name, demo_dataset, vit):
    torch.manual_seed(0)
    model = build(shrink(load_fragment(name)))
    batch = pseudo_collate([demo_dataset[0], demo_dataset[1]])

    data = model.data_preprocessor(batch, True)
    assert data['inputs'].shape[-2:] == (84, 84)  # 80 px padded to 6 patches
    model.train()
    losses = model.loss(vit(data['inputs']), data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)

    model.eval()
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        feats = vit(data['inputs'])
        results = model.predict(feats, data['data_samples'])
    for result in results:
        assert result.ori_shape == (IMG_SIZE, IMG_SIZE)
        pred = result.pred_instances
        assert len(pred.bboxes) > 0
        assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= IMG_SIZE
        if FRAGMENTS[name] == 'segmentation_model':
            assert pred.masks.shape[-2:] == (IMG_SIZE, IMG_SIZE)
    # boxes are scaled from the resized to the original image
    if FRAGMENTS[name] == 'detection_model':
        rescaled = [r.pred_instances.bboxes.clone() for r in results]
        with torch.no_grad():  # predict writes into the same data samples
            unscaled = model.predict(
                feats, data['data_samples'], rescale=False)
        for boxes, raw in zip(rescaled, unscaled):
            torch.testing.assert_close(
                boxes, raw.pred_instances.bboxes * (IMG_SIZE / RESIZED))


def test_mask2former_loss_uses_every_image_of_the_batch(demo_dataset, vit):
    torch.manual_seed(0)
    model = build(shrink(load_fragment('visft_mask2former.py')))
    model.train()

    def loss_and_feats(samples):
        data = model.data_preprocessor(pseudo_collate(samples), True)
        feats = vit(data['inputs'])[0].detach().requires_grad_()
        torch.manual_seed(0)  # same sampled points
        losses = model.loss((feats, ), data['data_samples'])
        return sum(v for k, v in losses.items() if 'loss' in k), feats

    one, _ = loss_and_feats([demo_dataset[0]])
    two, feats = loss_and_feats([demo_dataset[0], demo_dataset[1]])
    assert torch.isfinite(one) and torch.isfinite(two)
    assert not torch.isclose(one, two)
    two.backward()
    assert feats.grad[1].abs().sum() > 0  # the second image is supervised too


@pytest.mark.parametrize('name',
                         ['visft_dino_demo.py', 'visft_mask2former.py'])
def test_deformable_heads_train_under_bf16_autocast(name, demo_dataset, vit):
    """The stage configs train under bf16 autocast; on the CPU the deformable
    attention and focal loss take their PyTorch fallbacks."""
    torch.manual_seed(0)
    model = build(shrink(load_fragment(name)))
    model.train()
    data = model.data_preprocessor(
        pseudo_collate([demo_dataset[0], demo_dataset[1]]), True)
    feats = vit(data['inputs'])[0].detach().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss((feats, ), data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert feats.grad.abs().sum() > 0
