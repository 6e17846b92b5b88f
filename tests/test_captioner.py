"""ImageCaptioner on the shared ViT's features: built from a config, fed real
demo batches, overfit to two images, scored by CaptionMetric."""
import copy
from pathlib import Path
from typing import List

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.model import ImgDataPreprocessor
from mmengine.registry import init_default_scope
from tiny import CAPTION_PIPELINE, NARROW_VIT, tiny_caption_cfg

from visft_mm.models import EVAViT, FeaturesAsInput, ImageCaptioner
from visft_mm.registry import DATASETS, MODELS

# One block: the overfitting test trains the ViT too, at 256 px.
TINY = dict(NARROW_VIT, num_layers=1)
VIT = dict(type='EVAViT', arch=TINY, pretrain_img_size=56)
# Demo images 1 and 4 (train mode: items 0 and 15): 'a blue triangle',
# 'a yellow square'.
TRAIN_ITEMS, SHAPES = (0, 15), ('triangle', 'square')


def build_captioner(root: Path, **kwargs) -> ImageCaptioner:
    init_default_scope('visft_mm')
    cfg = tiny_caption_cfg(root, in_channels=TINY['embed_dims'])
    cfg.update(kwargs)
    return MODELS.build(cfg)


def batch(root: Path, items, test_mode: bool = False) -> dict:
    dataset = DATASETS.build(
        dict(
            type='CocoCaptionDataset',
            data_root=str(root),
            ann_file='annotations/captions_train.json',
            data_prefix=dict(img_path='train/'),
            pipeline=CAPTION_PIPELINE,
            test_mode=test_mode))
    return pseudo_collate([dataset[i] for i in items])


def test_built_from_config_in_the_visft_mm_scope(small_demo_coco):
    captioner = build_captioner(small_demo_coco)
    assert isinstance(captioner.backbone, FeaturesAsInput)
    assert type(captioner.data_preprocessor) is ImgDataPreprocessor
    data = captioner.data_preprocessor(
        batch(small_demo_coco, TRAIN_ITEMS), True)
    assert data['inputs'].shape == (
        2, 3, 256, 256) and data['inputs'].dtype == torch.float32
    assert abs(data['inputs'].mean().item()) < 3  # normalised
    assert [s.gt_caption for s in data['data_samples']
            ] == ['a blue triangle', 'a yellow square']


def test_forward_modes_on_shared_features(small_demo_coco):
    torch.manual_seed(0)
    captioner = build_captioner(small_demo_coco).eval()
    vit = EVAViT(arch=TINY, pretrain_img_size=56).eval()
    data = captioner.data_preprocessor(
        batch(small_demo_coco, TRAIN_ITEMS), True)
    feats = vit(data['inputs'])
    assert feats[-1].shape == (2, 32, 18, 18)  # patch 14 at 256 px

    losses = captioner(feats, data['data_samples'], mode='loss')
    assert set(losses) == {
        'loss_caption', 'loss_caption_attn', 'caption_top5_acc'
    }
    torch.testing.assert_close(losses,
                               captioner.loss(feats, data['data_samples']))
    logits, alphas = captioner(feats, data['data_samples'], mode='tensor')
    # 'a blue triangle' + <end>: 4 steps; 16 pooled pixels.
    assert logits.shape == (2, 4, len(
        captioner.head.vocab)) and alphas.shape == (2, 4, 16)
    predictions = captioner(
        feats, copy.deepcopy(data['data_samples']), mode='predict')
    assert all(isinstance(p.pred_caption, str) for p in predictions)
    with pytest.raises(RuntimeError, match='invalid mode'):
        captioner(feats, data['data_samples'], mode='features')
    with pytest.raises(TypeError, match='shared backbone features'):
        captioner(data['inputs'], data['data_samples'], mode='loss')


def test_vit_inside_equals_vit_shared(small_demo_coco):
    """With the ViT as its own backbone the captioner takes images and
    computes what the FeaturesAsInput captioner computes on the ViT's
    output."""
    torch.manual_seed(0)
    with_vit = build_captioner(small_demo_coco, backbone=VIT).eval()
    on_features = build_captioner(small_demo_coco).eval()
    on_features.load_state_dict({
        k: v
        for k, v in with_vit.state_dict().items()
        if not k.startswith('backbone.')
    })
    data = with_vit.data_preprocessor(
        batch(small_demo_coco, TRAIN_ITEMS), True)
    with torch.no_grad():
        expected = with_vit(data['inputs'], data['data_samples'], mode='loss')
        got = on_features(
            with_vit.backbone(data['inputs']),
            data['data_samples'],
            mode='loss')
    torch.testing.assert_close(got, expected)


def test_overfits_two_images_and_is_scored(small_demo_coco):
    torch.manual_seed(0)
    captioner = build_captioner(small_demo_coco)
    vit = EVAViT(arch=TINY, pretrain_img_size=56)
    optimizer = torch.optim.Adam([*vit.parameters(), *captioner.parameters()],
                                 lr=1e-2)
    data = captioner.data_preprocessor(
        batch(small_demo_coco, TRAIN_ITEMS), True)
    losses: List[float] = []
    for _ in range(40):
        parts = captioner.loss(vit(data['inputs']), data['data_samples'])
        loss = parts['loss_caption'] + parts['loss_caption_attn']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts['loss_caption'].item())
    assert losses[-1] < 0.1 * losses[0], losses

    # Test mode: one item per image, all five captions as references.
    captioner.eval(), vit.eval()
    test_data = captioner.data_preprocessor(
        batch(small_demo_coco, (0, 3), test_mode=True), False)
    with torch.no_grad():
        predictions = captioner.predict(
            vit(test_data['inputs']), test_data['data_samples'])
    for prediction, shape, other in zip(predictions, SHAPES, reversed(SHAPES)):
        words = prediction.pred_caption.split()
        assert shape in words and other not in words, prediction.pred_caption
        assert len(prediction.gt_caption) == 5

    from visft_mm.evaluation import CaptionMetric
    metric = CaptionMetric()
    metric.process({}, predictions)
    scores = metric.evaluate(len(predictions))
    assert set(scores) == {
        f'caption/{name}'
        for name in ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR',
                     'ROUGE_L', 'CIDEr')
    }
    assert scores['caption/Bleu_1'] > 0.5
