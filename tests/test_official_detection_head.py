"""The official detection head (UniT's DETR) as visft_mm.UniTDETR: a state
dict in the layout of the released files, mapped by detection_state_dict and
loaded strictly, gives the outputs of the official forward (written here
from the research notes in plain torch); labels map to raw COCO ids and
back; the mapping names what it cannot place."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from official_layouts import detection_shapes as official_shapes
from official_layouts import random_detection
from tiny import with_tiny_vit

from visft_mm.analysis import task_inputs
from visft_mm.checkpoints.io import CheckpointError
from visft_mm.checkpoints.official_heads import (detection_backbone_arch,
                                                 detection_state_dict)
from visft_mm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
FRAGMENT = ROOT / 'configs/_base_/models/visft_detr_official.py'
WIDTH = 64  # the ViT width; 1408 for EVA-ViT-G
FEAT_H, FEAT_W = 5, 7
IMG_SHAPE, ORI_SHAPE = (70, 98), (140, 196)
HEADS, EPS = 8, 1e-5
NEVER_A_CATEGORY = {0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
NO_OBJECT = 91

P = 'visft_heads.'
T = P + 'transformer.'
DEC = T + 'decoders.detection.detection_coco.'


def random_official(width=WIDTH, seed=0):
    """A fresh dict (tensors shared) of random official detection tensors."""
    return random_detection(width, seed)


def stage1_config(size):
    return Config.fromfile(
        str(ROOT / 'configs/visft' /
            f'eva_{size}_stage1_unit-detr_official_8xb1-150k_coco.py'))


def build_model(width=WIDTH, **test_cfg):
    init_default_scope('visft_mm')
    cfg = Config.fromfile(str(FRAGMENT)).official_detection_model
    cfg.neck.in_channels = [width]
    cfg.test_cfg.update(test_cfg)
    return MODELS.build(cfg)


def loaded_model(official, **test_cfg):
    model = build_model(**test_cfg)
    model.load_state_dict(detection_state_dict(official), strict=True)
    return model.eval()


# ----------------------------------------------------------------------------
# The official forward, in plain torch, from official_heads.md.
# ----------------------------------------------------------------------------


def sine_position(h, w, num_pos_feats=64, temperature=10000):
    """DETR's PositionEmbeddingSine, normalised, scale 2*pi: (h*w, 128)."""
    y = torch.arange(1, h + 1.).view(h, 1).expand(h, w)
    x = torch.arange(1, w + 1.).view(1, w).expand(h, w)
    y = y / (h + 1e-6) * 2 * math.pi
    x = x / (w + 1e-6) * 2 * math.pi
    dim_t = temperature**(2 * (torch.arange(num_pos_feats) // 2) /
                          num_pos_feats)

    def embed(coord):
        angles = coord[..., None] / dim_t
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()),
                           dim=-1).flatten(-2)

    return torch.cat((embed(y), embed(x)), dim=-1).view(h * w, -1)


def attention(sd, prefix, query, key, value):
    """nn.MultiheadAttention with packed in_proj rows (q, k, v), by hand."""
    dims = query.size(-1)
    w, b = sd[prefix + 'in_proj_weight'], sd[prefix + 'in_proj_bias']
    q, k, v = (x @ w[i * dims:(i + 1) * dims].T + b[i * dims:(i + 1) * dims]
               for i, x in enumerate((query, key, value)))

    def split(x):  # (L, dims) -> (heads, L, head_dims)
        return x.view(x.size(0), HEADS, dims // HEADS).transpose(0, 1)

    weights = (split(q) @ split(k).transpose(1, 2) /
               math.sqrt(dims // HEADS)).softmax(-1)
    out = (weights @ split(v)).transpose(0, 1).reshape(-1, dims)
    return out @ sd[prefix + 'out_proj.weight'].T + sd[prefix +
                                                       'out_proj.bias']


def linear(sd, prefix, x):
    return x @ sd[prefix + 'weight'].T + sd[prefix + 'bias']


def norm(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + 'weight'],
                        sd[prefix + 'bias'])


def ffn(sd, layer, x):
    return linear(sd, layer + 'linear2.',
                  linear(sd, layer + 'linear1.', x).relu())


def official_forward(sd, feat):
    """Class probabilities (layers, 100, 92) and cxcywh boxes (layers, 100,
    4) of every decoder layer for one (1, C, h, w) feature map."""
    src = F.conv2d(feat, sd[P + 'input_proj.weight'],
                   sd[P + 'input_proj.bias'])[0].flatten(1).T  # (hw, 128)
    pos = sine_position(*feat.shape[-2:])
    x = torch.cat([sd[T + 'task_embeddings_enc.weight'][:1], src])
    x_pos = torch.cat([torch.zeros(1, 128), pos])
    for i in range(6):
        layer = f'{T}encoder.layers.{i}.'
        x = norm(
            sd, layer + 'norm1.',
            x + attention(sd, layer + 'self_attn.', x + x_pos, x + x_pos, x))
        x = norm(sd, layer + 'norm2.', x + ffn(sd, layer, x))
    memory = linear(sd, T + 'enc2dec_proj.', src + x[1:])
    memory_pos = linear(sd, T + 'pos_embed_proj.', pos)
    query_pos = sd[P + 'query_embeds.detection.detection_coco.weight']
    tgt, outputs = torch.zeros_like(query_pos), []
    for i in range(6):
        layer = f'{DEC}layers.{i}.'
        tgt = norm(
            sd, layer + 'norm1.',
            tgt + attention(sd, layer + 'self_attn.', tgt + query_pos,
                            tgt + query_pos, tgt))
        tgt = norm(
            sd, layer + 'norm2.',
            tgt + attention(sd, layer + 'multihead_attn.', tgt + query_pos,
                            memory + memory_pos, memory))
        tgt = norm(sd, layer + 'norm3.', tgt + ffn(sd, layer, tgt))
        outputs.append(norm(sd, DEC + 'norm.', tgt))
    hs = torch.stack(outputs)
    probs = linear(sd, P + 'class_embeds.', hs).softmax(-1)
    box = hs
    for i in range(3):
        box = linear(sd, f'{P}bbox_embeds.layers.{i}.', box)
        box = box.relu() if i < 2 else box.sigmoid()
    return probs, box


def official_postprocess(probs, boxes):
    """Official PostProcess on the last layer: per query the best row but
    no-object, boxes xyxy in the original image; rows that are no COCO
    category dropped (COCO evaluation ignores them)."""
    scores, rows = probs[-1, :, :-1].max(-1)
    cx, cy, w, h = boxes[-1].unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    xyxy = xyxy * torch.tensor(ORI_SHAPE[::-1] * 2, dtype=torch.float32)
    keep = torch.tensor([r not in NEVER_A_CATEGORY for r in rows.tolist()])
    return scores[keep], rows[keep], xyxy[keep]


# ----------------------------------------------------------------------------


def data_sample(labels=None,
                bboxes=None,
                img_shape=IMG_SHAPE,
                batch_input_shape=IMG_SHAPE):
    scale = IMG_SHAPE[0] / ORI_SHAPE[0]
    sample = DetDataSample(
        metainfo=dict(
            img_shape=img_shape,
            batch_input_shape=batch_input_shape,
            ori_shape=ORI_SHAPE,
            scale_factor=(scale, scale)))
    if labels is not None:
        sample.gt_instances = InstanceData(
            labels=torch.tensor(labels), bboxes=torch.tensor(bboxes))
    return sample


def features():
    return torch.randn(
        1, WIDTH, FEAT_H, FEAT_W, generator=torch.Generator().manual_seed(1))


def test_every_decoder_layer_matches_the_official_forward():
    official = random_official()
    feat = features()
    model = loaded_model(official)
    with torch.no_grad():
        cls_scores, boxes = model((feat, ), [data_sample()], mode='tensor')
        probs, official_boxes = official_forward(official, feat)
    assert cls_scores.shape == (6, 1, 100, 92)
    torch.testing.assert_close(
        cls_scores[:, 0].softmax(-1), probs, atol=EPS, rtol=0)
    torch.testing.assert_close(boxes[:, 0], official_boxes, atol=EPS, rtol=0)
    # queries differ: the comparison has teeth
    assert probs[-1, :, :-1].argmax(-1).unique().numel() > 5


def test_a_padded_image_gives_its_unpadded_outputs():
    """In a batch, the smaller image's padding is masked out of attention
    but its task token is not, so it gets the outputs it gets alone."""
    model = loaded_model(random_official())
    small_shape, small_h, small_w = (42, 70), 3, 5
    batch = torch.cat([features(), features().flip(1)])
    with torch.no_grad():
        batched = model((batch, ), [
            data_sample(),
            data_sample(img_shape=small_shape, batch_input_shape=IMG_SHAPE)
        ],
                        mode='tensor')
        alone = model((batch[1:, :, :small_h, :small_w], ), [
            data_sample(img_shape=small_shape, batch_input_shape=small_shape)
        ],
                      mode='tensor')
    for batched_out, alone_out in zip(batched, alone):
        torch.testing.assert_close(
            batched_out[:, 1], alone_out[:, 0], atol=EPS, rtol=0)


def test_official_inference_gives_the_official_detections():
    official = random_official(seed=1)
    # wide boxes, some of which cross the image border
    official[P + 'bbox_embeds.layers.2.bias'] = torch.tensor([0., 0., 2., 2.])
    feat = features()
    model = loaded_model(official, official_inference=True)
    with torch.no_grad():
        result = model.predict((feat, ), [data_sample()])[0].pred_instances
        scores, rows, xyxy = official_postprocess(
            *official_forward(official, feat))
    head = model.bbox_head
    torch.testing.assert_close(result.scores, scores, atol=EPS, rtol=0)
    assert torch.equal(head.labels_to_rows(result.labels), rows)
    torch.testing.assert_close(result.bboxes, xyxy, atol=1e-3, rtol=0)
    assert 0 < len(rows) < 100  # some queries pick a row that is no category
    assert (xyxy[:, :2] < 0).any()


def test_default_inference_keeps_the_best_category_of_each_query():
    model = loaded_model(random_official(seed=1))
    with torch.no_grad():
        result = model.predict((features(), ),
                               [data_sample()])[0].pred_instances
    assert len(result) == 100
    assert result.labels.min() >= 0 and result.labels.max() < 80
    assert (result.bboxes >= 0).all()
    assert (result.bboxes[:, 2] <= ORI_SHAPE[1] + 1e-3).all()
    assert (result.bboxes[:, 3] <= ORI_SHAPE[0] + 1e-3).all()


def test_labels_map_to_raw_coco_ids_and_back():
    head = build_model().bbox_head
    labels = torch.arange(80)
    rows = head.labels_to_rows(labels)
    # person, bicycle, ..., traffic light, fire hydrant, stop sign, toothbrush
    assert rows[[0, 1, 9, 10, 11, 79]].tolist() == [1, 2, 10, 11, 13, 90]
    assert set(range(91)) - set(rows.tolist()) == NEVER_A_CATEGORY
    assert torch.equal(head.rows_to_labels(rows), labels)
    assert (head.rows_to_labels(torch.tensor(
        sorted(NEVER_A_CATEGORY))) == -1).all()
    assert head.rows_to_labels(torch.tensor([NO_OBJECT])).item() == -1


def test_training_step_takes_92_way_targets_and_the_official_loss(monkeypatch):
    """Matched queries learn the raw ids of their boxes, the others
    no-object, with the official cross-entropy (no-object weighted 0.1)."""
    model = loaded_model(random_official())
    head = model.bbox_head
    calls = []
    loss_single, get_targets = head.loss_by_feat_single, head.get_targets

    def record_targets(*args, **kwargs):
        targets = get_targets(*args, **kwargs)
        calls[-1]['labels'] = targets[0][0]
        return targets

    def record_loss(cls_scores, *args, **kwargs):
        calls.append(dict(cls_scores=cls_scores))
        losses = loss_single(cls_scores, *args, **kwargs)
        calls[-1]['loss_cls'] = losses[0]
        return losses

    monkeypatch.setattr(head, 'get_targets', record_targets)
    monkeypatch.setattr(head, 'loss_by_feat_single', record_loss)
    sample = data_sample(
        labels=[0, 11, 79],
        bboxes=[[4., 6., 30., 40.], [50., 10., 90., 60.], [20., 30., 60.,
                                                           68.]])
    model.train()
    losses = model.loss((features(), ), [sample])
    assert len(calls) == 6 and {f'd{i}.loss_cls'
                                for i in range(5)} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert head.fc_cls.weight.grad[[1, 13, 90, NO_OBJECT]].abs().sum() > 0
    empty_weight = torch.ones(92)
    empty_weight[NO_OBJECT] = 0.1
    for call in calls:
        labels = call['labels']
        assert sorted(labels[labels != NO_OBJECT].tolist()) == [1, 13, 90]
        official = F.cross_entropy(
            call['cls_scores'][0].detach(), labels, weight=empty_weight)
        torch.testing.assert_close(call['loss_cls'].detach(), official)


@pytest.mark.parametrize('size,arch', [('1b', 'eva-g'), ('4b', 'eva-e')])
def test_a_released_file_loads_into_its_stage1_config(size, arch):
    """A file in the released layout at the backbone's width loads strictly
    into the detection model of the matching stage-1 config."""
    cfg = stage1_config(size)
    width = cfg.model.tasks.detection.neck.in_channels[0]
    official = {
        key: torch.zeros(shape)
        for key, shape in official_shapes(width).items()
    }
    assert detection_backbone_arch(
        official) == cfg.model.backbone.module.arch == arch
    init_default_scope('visft_mm')
    model = MODELS.build(cfg.model.tasks.detection)
    model.load_state_dict(detection_state_dict(official), strict=True)


def test_synthetic_batches_draw_contiguous_labels():
    """The analysis tools' batches for the official head take the 80
    dataset labels, not its 91 classifier rows."""
    cfg = stage1_config('1b')
    assert task_inputs(cfg)['detection'].num_classes == 80


def test_visft_loads_the_mapped_head_as_its_detection_task(tmp_path):
    """The mapping's keys are those ViSFT(task_checkpoints=...) loads under
    ``tasks.detection.``, strictly, in the stage-1 config's model."""
    cfg = stage1_config('1b')
    model_cfg = with_tiny_vit(cfg.model, tmp_path)
    width = model_cfg.tasks.detection.neck.in_channels[0]
    state = detection_state_dict(random_official(width))
    path = tmp_path / 'detection.pth'
    torch.save({f'tasks.detection.{k}': v for k, v in state.items()}, path)
    model_cfg.task_checkpoints = dict(detection=str(path))
    init_default_scope('visft_mm')
    visft = MODELS.build(model_cfg)
    visft.init_weights()
    loaded = visft.tasks.detection.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_mapping_skips_other_heads_and_takes_the_detection_task_token():
    official = random_official()
    state = detection_state_dict(official)
    assert not [k for k in state if 'segment' in k or 'caption' in k]
    assert torch.equal(state['task_embedding.weight'],
                       official[T + 'task_embeddings_enc.weight'][:1])


@pytest.mark.parametrize(
    'change,named', [
        (lambda sd: sd.update(
            {T + 'encoder.layers.6.linear1.weight': torch.zeros(1024, 128)}),
         T + 'encoder.layers.6.linear1.weight'),
        (lambda sd: sd.update(
            {P + 'class_embeds.weight': torch.zeros(81, 256)}),
         P + 'class_embeds.weight (81, 256) (expected (92, 256))'),
        (lambda sd: sd.pop(DEC + 'norm.bias'), DEC + 'norm.bias'),
    ],
    ids=['unknown key', 'wrong shape', 'missing key'])
def test_mapping_names_what_it_cannot_place(change, named):
    official = random_official()
    change(official)
    with pytest.raises(CheckpointError, match='does not fit') as error:
        detection_state_dict(official)
    assert named in str(error.value)


def test_backbone_arch_comes_from_the_input_projection():
    assert detection_backbone_arch(random_official(1792)) == 'eva-e'
    with pytest.raises(CheckpointError, match='takes 64 channels'):
        detection_backbone_arch(random_official())
    with pytest.raises(CheckpointError, match='not an official detection'):
        detection_state_dict({P + 'class_embeds.weight': torch.zeros(92, 256)})
