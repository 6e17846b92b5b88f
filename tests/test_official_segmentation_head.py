"""The released ViSFT segmentation head: an official-layout state dict (random
tensors of the documented shapes) maps onto the official config's mmdet
Mask2Former, loads strictly, and computes what a functional re-implementation
of the official forward computes; class rows are shifted by one for targets
and mapped back for predictions; inputs are padded with grey 128 before the
normalisation; the mapping refuses what it cannot place."""
import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmdet.models.dense_heads import Mask2FormerHead
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from official_layouts import random_segmentation
from tiny import frozen_tiny_vit

from visft_mm.checkpoints.io import CheckpointError
from visft_mm.checkpoints.official_heads import segmentation_state_dict
from visft_mm.models import (EVAViT, PadThenNormalizeDetDataPreprocessor,
                             RepeatedMapPixelDecoder,
                             ShiftedLabelMask2FormerHead)
from visft_mm.models.heads.shifted_label_mask2former_head import (
    rows_to_class_logits, shift_labels_to_rows)
from visft_mm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs/visft'
OFFICIAL_CONFIG = (
    CONFIGS / 'eva_1b_stage1_mask2former_official_8xb1-150k_coco.py')
IN_CHANNELS = 48  # the tiny ViT's width
H, W = 5, 7  # feature map; not square, so a swapped axis shows
PIXEL = 'visft_heads.segment_pixel_decoder.'
PREDICTOR = 'visft_heads.segment_predictor.'
IMAGENET_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def random_official(c: int = IN_CHANNELS, seed: int = 0) -> dict:
    return random_segmentation(c, seed)


@pytest.fixture(scope='module')
def official() -> dict:
    return random_official()


@pytest.fixture(scope='module')
def loaded(official):
    """The official config's model with ``official`` loaded strictly; tests
    that change it take a copy."""
    model = build(official_config())
    model.load_state_dict(segmentation_state_dict(official), strict=True)
    return model


def official_config():
    seg = Config.fromfile(str(OFFICIAL_CONFIG)).model.tasks.segmentation
    seg.panoptic_head.in_channels = [IN_CHANNELS]
    return seg


def build(cfg):
    init_default_scope('visft_mm')
    return MODELS.build(copy.deepcopy(cfg))


# --------------------------------------------------------- official forward


def sine_position(h: int, w: int) -> torch.Tensor:
    """Official PositionEmbeddingSine(128, normalize=True), (h*w, 256)."""
    y = torch.arange(1, h + 1.).view(h, 1).expand(h, w)
    x = torch.arange(1, w + 1.).view(1, w).expand(h, w)
    y, x = y / (h + 1e-6) * 2 * math.pi, x / (w + 1e-6) * 2 * math.pi
    dim_t = 10000**(2 * (torch.arange(128) // 2) / 128)

    def encode(v):
        v = v[..., None] / dim_t
        return torch.stack((v[..., 0::2].sin(), v[..., 1::2].cos()),
                           dim=-1).flatten(-2)

    return torch.cat((encode(y), encode(x)), dim=-1).flatten(0, 1)


def linear(sd, name, x):
    return F.linear(x, sd[f'{name}.weight'], sd[f'{name}.bias'])


def layer_norm(sd, name, x):
    return F.layer_norm(x, x.shape[-1:], sd[f'{name}.weight'],
                        sd[f'{name}.bias'])


def group_norm(sd, name, x):
    return F.group_norm(x, 32, sd[f'{name}.weight'], sd[f'{name}.bias'])


def multihead_attention(sd, name, query, key, value, mask=None, heads=8):
    """nn.MultiheadAttention with packed q/k/v rows, (L, 256) inputs."""
    d = query.shape[-1]
    w, b = sd[f'{name}.in_proj_weight'], sd[f'{name}.in_proj_bias']
    q, k, v = (F.linear(t, w[i * d:(i + 1) * d],
                        b[i * d:(i + 1) * d]).view(t.shape[0], heads,
                                                   d // heads).transpose(0, 1)
               for i, t in enumerate((query, key, value)))
    scores = q @ k.transpose(1, 2) / math.sqrt(d // heads)
    if mask is not None:
        scores = scores.masked_fill(mask, float('-inf'))
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, d)
    return linear(sd, f'{name}.out_proj', out)


def official_forward(sd, feat):
    """The official pixel decoder and transformer decoder on ``feat``
    (1, C, H, W): class probabilities (Q, 81) and mask logits (Q, H, W) of
    the prediction before the first decoder layer and after each layer."""
    _, _, h, w = feat.shape
    # pixel decoder: deformable encoder on the map
    src = group_norm(
        sd, f'{PIXEL}input_proj.0.1',
        F.conv2d(feat, sd[f'{PIXEL}input_proj.0.0.weight'],
                 sd[f'{PIXEL}input_proj.0.0.bias']))
    x = src.flatten(2)[0].t()  # (HW, 256)
    pos = sine_position(h, w) + sd[f'{PIXEL}transformer.level_embed'][0]
    ys, xs = torch.meshgrid(
        torch.linspace(0.5, h - 0.5, h) / h,
        torch.linspace(0.5, w - 0.5, w) / w,
        indexing='ij')
    reference = torch.stack((xs.flatten(), ys.flatten()), dim=-1)  # (x, y)
    shapes = torch.tensor([[h, w]])
    for i in range(6):
        layer = f'{PIXEL}transformer.encoder.layers.{i}.'
        query = x + pos
        value = linear(sd, f'{layer}self_attn.value_proj',
                       x).view(1, h * w, 8, 32)
        offsets = linear(sd, f'{layer}self_attn.sampling_offsets',
                         query).view(1, h * w, 8, 1, 4, 2)
        weights = linear(sd, f'{layer}self_attn.attention_weights',
                         query).view(1, h * w, 8,
                                     4).softmax(-1).view(1, h * w, 8, 1, 4)
        locations = reference[None, :, None, None, None, :] + offsets / \
            torch.tensor([w, h])
        attended = multi_scale_deformable_attn_pytorch(value, shapes,
                                                       locations, weights)[0]
        x = layer_norm(
            sd, f'{layer}norm1',
            x + linear(sd, f'{layer}self_attn.output_proj', attended))
        x = layer_norm(
            sd, f'{layer}norm2',
            x + linear(sd, f'{layer}linear2',
                       F.relu(linear(sd, f'{layer}linear1', x))))
    encoded = x.t().reshape(1, 256, h, w)
    # the FPN pair on the same map, then the mask features
    lateral = group_norm(sd, f'{PIXEL}adapter_1.norm',
                         F.conv2d(feat, sd[f'{PIXEL}adapter_1.weight']))
    fpn = F.relu(
        group_norm(
            sd, f'{PIXEL}layer_1.norm',
            F.conv2d(
                lateral + F.interpolate(
                    encoded, (h, w), mode='bilinear', align_corners=False),
                sd[f'{PIXEL}layer_1.weight'],
                padding=1)))
    mask_features = F.conv2d(fpn, sd[f'{PIXEL}mask_features.weight'],
                             sd[f'{PIXEL}mask_features.bias'])[0]

    # transformer decoder on the encoder output
    memory = x + sd[f'{PREDICTOR}level_embed.weight'][0]
    memory_pos = sine_position(h, w)
    query_pos = sd[f'{PREDICTOR}query_embed.weight']
    output = sd[f'{PREDICTOR}query_feat.weight']

    def predict(output):
        normed = layer_norm(sd, f'{PREDICTOR}decoder_norm', output)
        probabilities = linear(sd, f'{PREDICTOR}class_embed',
                               normed).softmax(-1)
        embed = normed
        for i in range(3):
            embed = linear(sd, f'{PREDICTOR}mask_embed.layers.{i}', embed)
            embed = F.relu(embed) if i < 2 else embed
        masks = torch.einsum('qc,chw->qhw', embed, mask_features)
        attn_mask = F.interpolate(
            masks[None], (h, w), mode='bilinear', align_corners=False)[0]
        attn_mask = (attn_mask.sigmoid().flatten(1)
                     < 0.5)[None].repeat(8, 1, 1)
        return probabilities, masks, attn_mask

    probabilities, masks, attn_mask = predict(output)
    stages = [(probabilities, masks)]
    for i in range(9):
        attn_mask[attn_mask.all(-1)] = False
        layer = f'{PREDICTOR}transformer_cross_attention_layers.{i}.'
        output = layer_norm(
            sd, f'{layer}norm', output + multihead_attention(
                sd, f'{layer}multihead_attn', output + query_pos,
                memory + memory_pos, memory, attn_mask))
        layer = f'{PREDICTOR}transformer_self_attention_layers.{i}.'
        output = layer_norm(
            sd, f'{layer}norm', output +
            multihead_attention(sd, f'{layer}self_attn', output + query_pos,
                                output + query_pos, output))
        layer = f'{PREDICTOR}transformer_ffn_layers.{i}.'
        output = layer_norm(
            sd, f'{layer}norm',
            output + linear(sd, f'{layer}linear2',
                            F.relu(linear(sd, f'{layer}linear1', output))))
        probabilities, masks, attn_mask = predict(output)
        stages.append((probabilities, masks))
    return stages


# ------------------------------------------------------------------- tests


def test_official_config_builds_the_official_modules(loaded):
    model = loaded
    head = model.panoptic_head
    assert type(head) is ShiftedLabelMask2FormerHead
    assert type(head.pixel_decoder) is RepeatedMapPixelDecoder
    assert len(head.pixel_decoder.lateral_convs) == 1
    assert len(head.pixel_decoder.output_convs) == 1
    assert head.cls_embed.out_features == 81
    assert type(model.data_preprocessor) is \
        PadThenNormalizeDetDataPreprocessor


@pytest.mark.parametrize('size', ['1b', '4b'])
def test_official_config_differs_from_the_plain_one_only_where_intended(size):
    official = Config.fromfile(
        str(CONFIGS /
            f'eva_{size}_stage1_mask2former_official_8xb1-150k_coco.py')).model
    plain = Config.fromfile(
        str(CONFIGS /
            f'eva_{size}_stage1_mask2former_8xb1-150k_coco.py')).model
    assert official.backbone == plain.backbone
    official, plain = official.tasks.segmentation, plain.tasks.segmentation
    assert official.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert official.data_preprocessor.std == [58.395, 57.12, 57.375]
    for cfg in (official, plain):
        cfg.pop('data_preprocessor')
        cfg.panoptic_head.pop('type')
        cfg.panoptic_head.pixel_decoder.pop('type')
    assert official == plain


def test_forward_matches_the_official_forward_at_every_stage(official, loaded):
    model = copy.deepcopy(loaded).eval()
    feat = torch.randn(
        1, IN_CHANNELS, H, W, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cls_preds, mask_preds = model.panoptic_head(
            model.extract_feat((feat, )), [DetDataSample()])
        expected = official_forward(official, feat)
    assert len(cls_preds) == len(expected) == 10
    for stage, (cls_pred, mask_pred,
                (probabilities,
                 masks)) in enumerate(zip(cls_preds, mask_preds, expected)):
        torch.testing.assert_close(
            cls_pred[0].softmax(-1),
            probabilities,
            rtol=1e-5,
            atol=1e-5,
            msg=lambda m: f'class probabilities, stage {stage}: {m}')
        torch.testing.assert_close(
            mask_pred[0],
            masks,
            rtol=1e-5,
            atol=1e-5,
            msg=lambda m: f'mask logits, stage {stage}: {m}')


def test_aliases_convert_like_the_canonical_names(official):
    aliased = {
        k.replace(PIXEL, 'visft_heads.segment_head.pixel_decoder.').replace(
            PREDICTOR, 'visft_heads.segment_head.predictor.'):
        v
        for k, v in official.items()
    }
    expected = segmentation_state_dict(official)
    for state in (aliased, {**official, **aliased}):
        converted = segmentation_state_dict(state)
        assert converted.keys() == expected.keys()
        assert all(converted[k] is expected[k] for k in expected)


def test_other_heads_keys_are_left_to_their_own_mappings(official):
    converted = segmentation_state_dict({
        **official, 'det_losses.empty_weight':
        torch.ones(92),
        'visft_heads.caption_decoder.fc.bias':
        torch.zeros(9490)
    })
    assert converted.keys() == segmentation_state_dict(official).keys()


@pytest.mark.parametrize('change,message', [
    (lambda sd: sd.update({f'{PREDICTOR}extra.weight': torch.zeros(1)}),
     f'cannot place: {PREDICTOR}extra.weight'),
    (lambda sd: sd.update(
        {f'{PREDICTOR}class_embed.weight': torch.zeros(80, 256)}),
     rf'{PREDICTOR}class_embed.weight of shape \(80, 256\)'),
    (lambda sd: sd.pop(f'{PIXEL}layer_1.norm.bias'),
     f'lacks {PIXEL}layer_1.norm.bias'),
    (lambda sd: sd.update({
        'visft_heads.segment_head.predictor.query_feat.weight':
        sd[f'{PREDICTOR}query_feat.weight'] + 1
    }), f'{PREDICTOR}query_feat.weight'),
])
def test_mapping_refuses_what_it_cannot_place(official, change, message):
    official = dict(official)
    change(official)
    with pytest.raises(CheckpointError, match=message):
        segmentation_state_dict(official)


def test_task_checkpoint_of_converted_heads_loads_into_visft(
        official, tmp_path):
    path = tmp_path / 'segment_heads.pth'
    torch.save(
        {
            f'tasks.segmentation.{k}': v
            for k, v in segmentation_state_dict(official).items()
        }, path)
    init_default_scope('visft_mm')
    model = MODELS.build(
        dict(
            type='ViSFT',
            backbone=frozen_tiny_vit(
                tmp_path,
                dict(
                    embed_dims=IN_CHANNELS,
                    num_layers=1,
                    num_heads=4,
                    feedforward_channels=96),
                pretrain_img_size=56),
            tasks=dict(segmentation=official_config()),
            task_checkpoints=dict(segmentation=str(path))))
    model.init_weights()
    assert isinstance(model.backbone.module, EVAViT)
    head = model.tasks.segmentation.panoptic_head
    assert torch.equal(head.pixel_decoder.lateral_convs[0].conv.weight,
                       official[f'{PIXEL}adapter_1.weight'])
    assert torch.equal(
        head.transformer_decoder.layers[8].norms[1].bias,
        official[f'{PREDICTOR}transformer_self_attention_'
                 'layers.8.norm.bias'])


# ------------------------------------------------------------ class rows


def test_class_rows_round_trip():
    labels = torch.arange(80)
    rows = shift_labels_to_rows(labels)
    assert rows.tolist() == list(range(1, 81))  # toothbrush -> no-object row
    row_logits = torch.full((80, 81), -10.)
    row_logits[labels, rows] = 10.
    class_probabilities = rows_to_class_logits(row_logits).softmax(-1)
    predicted = class_probabilities[:, :-1].argmax(-1)
    assert torch.equal(predicted[:79], labels[:79])
    assert class_probabilities[79, -1] > 0.99  # toothbrush reads no-object

    logits = torch.randn(3, 100, 81)
    probabilities = logits.softmax(-1)
    mapped = rows_to_class_logits(logits).softmax(-1)
    torch.testing.assert_close(mapped[..., :79], probabilities[..., 1:80])
    assert torch.all(mapped[..., 79] == 0)  # the last class is never output
    torch.testing.assert_close(mapped[..., 80],
                               probabilities[..., 0] + probabilities[..., 80])


@pytest.mark.parametrize('row', [6, 0])
def test_predictions_are_standard_coco_classes(loaded, row):
    model = copy.deepcopy(loaded).eval()
    head = model.panoptic_head
    with torch.no_grad():  # every query predicts `row`
        head.cls_embed.weight.zero_()
        head.cls_embed.bias.fill_(-20.).index_fill_(0, torch.tensor([row]),
                                                    20.)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(H * 14, W * 14),
            ori_shape=(H * 14, W * 14),
            batch_input_shape=(H * 14, W * 14),
            scale_factor=(1., 1.)))
    with torch.no_grad():
        result = model.predict((torch.randn(1, IN_CHANNELS, H, W), ),
                               [sample])[0].pred_instances
    if row:
        assert result.labels.unique().tolist() == [row - 1]
    else:  # row 0 is no class: nothing scores
        assert result.scores.max() < 1e-6


def segmentation_sample(labels):
    size = (H * 14, W * 14)
    masks = torch.zeros(len(labels), *size, dtype=torch.uint8)
    for i in range(len(labels)):
        masks[i, 10 * i:10 * i + 30, 5:40 + 10 * i] = 1
    return DetDataSample(
        metainfo=dict(img_shape=size, batch_input_shape=size, pad_shape=size),
        gt_instances=InstanceData(
            labels=torch.tensor(labels),
            masks=BitmapMasks(masks.numpy(), *size)))


def test_training_step_uses_the_official_rows(loaded, monkeypatch):
    """The loss of the shifted head on labels L is mmdet's loss on L + 1,
    with the last class on the no-object row; gradients reach the features
    through the frozen head, as in stage 2."""
    model = copy.deepcopy(loaded).train()
    model.requires_grad_(False)
    model.panoptic_head.num_points = 256  # of 12544, to keep the test fast
    plain = copy.deepcopy(model)
    plain.panoptic_head.__class__ = Mask2FormerHead

    targets = []
    get_targets = model.panoptic_head.get_targets

    def recording_get_targets(cls_scores, mask_preds, gt_instances, metas):
        targets.append([g.labels.tolist() for g in gt_instances])
        return get_targets(cls_scores, mask_preds, gt_instances, metas)

    monkeypatch.setattr(model.panoptic_head, 'get_targets',
                        recording_get_targets)

    feat = torch.randn(1, IN_CHANNELS, H, W).requires_grad_()
    torch.manual_seed(0)
    losses = model.loss((feat, ), [segmentation_sample([0, 41, 79])])
    torch.manual_seed(0)
    expected = plain.loss((feat.detach(), ),
                          [segmentation_sample([1, 42, 80])])
    assert targets and all(t == [[1, 42, 80]] for t in targets)
    assert losses.keys() == expected.keys()
    for key in losses:
        torch.testing.assert_close(losses[key], expected[key], msg=key)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert feat.grad.abs().sum() > 0


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize('training', [False, True])
def test_inputs_are_padded_with_grey_before_normalisation(loaded, training):
    preprocessor = loaded.data_preprocessor
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)  # BGR
    sample = segmentation_sample([3])
    sample.set_metainfo(dict(img_shape=(50, 70)))
    sample.gt_instances.masks = BitmapMasks(
        torch.ones(1, 50, 70, dtype=torch.uint8).numpy(), 50, 70)
    out = preprocessor(
        dict(inputs=[image], data_samples=[sample]), training=training)
    inputs = out['inputs'][0]
    assert inputs.shape[-2:] == ((1024, 1024) if training else (64, 96))
    rgb = image.flip(0).float()
    torch.testing.assert_close(inputs[:, :50, :70],
                               (rgb - IMAGENET_MEAN) / IMAGENET_STD)
    grey = (128 - IMAGENET_MEAN) / IMAGENET_STD
    assert torch.allclose(inputs[:, 50:, :], grey)
    assert torch.allclose(inputs[:, :, 70:], grey)
    if training:
        masks = out['data_samples'][0].gt_instances.masks
        assert masks.masks.shape[-2:] == (1024, 1024)
        assert masks.masks[:, 50:].sum() == 0 and masks.masks[:, :,
                                                              70:].sum() == 0
