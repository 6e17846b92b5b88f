"""ViSFT model: task routing, stage-1 and stage-2 freezing, checkpoint
contents, strict loading of stage-1 task checkpoints."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from tiny import (TINY_VIT, build_visft, demo_caption_dataloader,
                  demo_det_dataloader, frozen_tiny_vit, tiny_caption_cfg,
                  tiny_detection_cfg, tiny_segmentation_cfg, tiny_visft_cfg,
                  tiny_vit_checkpoint)

from visft_mm.checkpoints.io import module_misfit
from visft_mm.registry import MODELS


def batches(root, task):
    loader = Runner.build_dataloader(
        demo_det_dataloader(root, 'train'), seed=0)
    batch = next(iter(loader))
    batch['task'] = task
    return batch


def train_steps(model, root, steps=2):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.AdamW(trainable, lr=1e-3))
    model.train()
    logs = []
    for task in ('detection', 'segmentation')[:steps]:
        logs.append(model.train_step(batches(root, task), optim))
    return logs


def snapshot(module):
    return {
        k: v.detach().clone()
        for k, v in module.state_dict(keep_vars=True).items()
    }


def changed(before, module):
    after = module.state_dict(keep_vars=True)
    return {k for k in before if not torch.equal(before[k], after[k].detach())}


def test_stage1_trains_heads_not_backbone(demo_coco, tmp_path):
    model = build_visft(stage=1, directory=tmp_path)
    backbone_before = {
        k: v.clone()
        for k, v in model.backbone.state_dict().items()
    }
    heads_before = snapshot(model.tasks)
    logs = train_steps(model, demo_coco)
    assert any(k.startswith('detection.loss') for k in logs[0])
    assert any(k.startswith('segmentation.loss') for k in logs[1])
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    assert all(p.grad is None for p in model.backbone.parameters())
    moved = changed(heads_before, model.tasks)
    assert any(k.startswith('detection.') for k in moved)
    assert any(k.startswith('segmentation.') for k in moved)


def test_stage2_trains_only_lora(demo_coco, tmp_path):
    model = build_visft(stage=2, directory=tmp_path)
    before = snapshot(model)
    train_steps(model, demo_coco)
    moved = changed(before, model)
    assert moved and all(
        k.rsplit('.', 1)[-1] in ('lora_A', 'lora_B') for k in moved), moved
    # heads are frozen but, as in the official code, run in train mode
    assert model.tasks.training and not any(p.requires_grad
                                            for p in model.tasks.parameters())


def test_checkpoints_leave_out_the_frozen_backbone(tmp_path):
    stage1 = build_visft(stage=1, directory=tmp_path)
    keys = set(stage1.state_dict())
    assert not any(k.startswith('backbone.') for k in keys)
    assert any(k.startswith('tasks.detection.') for k in keys)
    stage2 = build_visft(stage=2, directory=tmp_path)
    backbone_keys = {
        k
        for k in stage2.state_dict() if k.startswith('backbone.')
    }
    assert backbone_keys and all('.lora_' in k for k in backbone_keys)
    # a checkpoint without the frozen weights loads strictly; a partial one
    # does not
    state = stage2.state_dict()
    build_visft(
        stage=2, directory=tmp_path).load_state_dict(
            state, strict=True)
    del state['tasks.detection.query_embedding.weight']
    with pytest.raises(RuntimeError, match='query_embedding'):
        build_visft(
            stage=2, directory=tmp_path).load_state_dict(
                state, strict=True)


def test_stage2_loads_stage1_task_checkpoints_strictly(tmp_path):
    stage1 = build_visft(stage=1, directory=tmp_path)
    path = tmp_path / 'stage1.pth'
    torch.save({'meta': {}, 'state_dict': stage1.state_dict()}, path)
    stage2 = build_visft(
        stage=2,
        directory=tmp_path,
        task_checkpoints=dict(detection=str(path), segmentation=str(path)))
    for key, value in stage1.tasks.state_dict().items():
        assert torch.equal(stage2.tasks.state_dict()[key], value), key

    broken = stage1.state_dict()
    broken.pop('tasks.segmentation.panoptic_head.query_feat.weight')
    torch.save({'state_dict': broken}, path)
    with pytest.raises(KeyError, match='query_feat'):
        build_visft(
            stage=2,
            directory=tmp_path,
            task_checkpoints=dict(segmentation=str(path)))
    torch.save({'state_dict': {
        'tasks.caption.fc.weight': torch.zeros(1)
    }}, path)
    with pytest.raises(KeyError, match="no weights of task 'detection'"):
        build_visft(
            stage=2,
            directory=tmp_path,
            task_checkpoints=dict(detection=str(path)))


def test_unknown_task_is_a_clear_error(demo_coco, tmp_path):
    model = build_visft(stage=1, directory=tmp_path)
    batch = batches(demo_coco, 'depth')
    with pytest.raises(KeyError, match="unknown task 'depth'"):
        model.val_step(batch)
    with pytest.raises(KeyError, match='unknown tasks'):
        build_visft(
            stage=2, directory=tmp_path, task_checkpoints=dict(depth='x.pth'))


def test_task_with_its_own_backbone_is_rejected():
    init_default_scope('visft_mm')
    detection = tiny_detection_cfg()
    detection['backbone'] = dict(type='ResNet', depth=18)
    with pytest.raises(ValueError, match='its own backbone'):
        MODELS.build(
            dict(
                type='ViSFT',
                backbone=dict(type='EVAViT', arch=TINY_VIT),
                tasks=dict(detection=detection)))


def test_predict_routes_to_the_task(demo_coco, tmp_path):
    model = build_visft(stage=1, directory=tmp_path).eval()
    loader = Runner.build_dataloader(
        demo_det_dataloader(demo_coco, 'val', train=False))
    batch = next(iter(loader))
    batch['task'] = 'segmentation'
    out = model.val_step(batch)
    assert len(out) == 2 and out[0].pred_instances.masks.shape[-2:] == out[
        0].ori_shape


def test_stage2_checkpoint_merges_into_a_plain_backbone(tmp_path):
    from visft_mm.checkpoints.lora_files import (load_lora,
                                                 merge_lora_state_dict)
    from visft_mm.models import EVAViT
    model = build_visft(stage=2, directory=tmp_path)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if name.endswith('lora_B'):
                p.normal_(0, 0.1)
    path = tmp_path / 'iter_10.pth'
    torch.save({'meta': {'iter': 10}, 'state_dict': model.state_dict()}, path)
    weights = load_lora(path, alpha=4)
    assert weights.layout == 'visft_mm_run' and len(
        weights.layers) == TINY_VIT['num_layers']
    base = {
        k: v
        for k, v in model.backbone.network.state_dict().items()
        if 'lora_' not in k
    }
    merged = EVAViT(arch=TINY_VIT, pretrain_img_size=112).eval()
    merged.load_state_dict(merge_lora_state_dict(base, weights))
    x = torch.randn(1, 3, 112, 140)
    with torch.no_grad():
        torch.testing.assert_close(
            merged(x)[0], model.backbone.eval()(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('stage', [1, 2])
@pytest.mark.parametrize(
    'init_weights', [True, False], ids=['training', 'tools_test'])
def test_run_checkpoint_holds_no_frozen_tensor_and_reloads_strictly(
        stage, init_weights, tmp_path):
    """A run checkpoint has every trainable tensor (heads in stage 1, LoRA in
    stage 2) and no frozen one; a fresh model built from the config reloads
    it strictly through mmengine's loader, with init_weights() (training,
    resume) or without (tools/test.py), its frozen ViT the pretrained one."""
    init_default_scope('visft_mm')
    trained = build_visft(stage=stage, directory=tmp_path)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.5)
    state = trained.state_dict()
    trainable_backbone = {
        f'backbone.{name}'
        for name, p in trained.backbone.named_parameters() if p.requires_grad
    }
    assert {k
            for k in state if k.startswith('backbone.')} == trainable_backbone
    assert {f'tasks.{k}' for k in trained.tasks.state_dict()} <= set(state)
    assert any('lora_B' in k for k in state) == (stage == 2)
    path = tmp_path / 'iter_1.pth'
    torch.save({'meta': {}, 'state_dict': state}, path)

    fresh = MODELS.build(tiny_visft_cfg(stage, tmp_path))
    if init_weights:
        fresh.init_weights()
    load_checkpoint(fresh, str(path), strict=True)
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    pretrained = torch.load(tiny_vit_checkpoint(tmp_path))
    vit = fresh.backbone.network if stage == 2 else fresh.backbone.module
    for key, value in pretrained.items():
        assert torch.equal(vit.state_dict()[key], value), key

    del state['tasks.detection.query_embedding.weight']
    torch.save({'meta': {}, 'state_dict': state}, path)
    with pytest.raises(
            RuntimeError, match='tasks.detection.query_embedding.weight'):
        load_checkpoint(
            MODELS.build(tiny_visft_cfg(stage, tmp_path)),
            str(path),
            strict=True)
    assert module_misfit(
        fresh, state).missing == ['tasks.detection.query_embedding.weight']


def caption_batch(root):
    loader = Runner.build_dataloader(
        demo_caption_dataloader(
            root,
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=False)))
    return next(iter(loader))


def test_tiny_overfit_lowers_the_loss_of_every_task(demo_coco, tmp_path):
    """Stage 1 on one fixed batch per task: each task's loss falls."""
    init_default_scope('visft_mm')
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='ViSFT',
            backbone=frozen_tiny_vit(tmp_path),
            tasks=dict(
                detection=tiny_detection_cfg(),
                segmentation=tiny_segmentation_cfg(),
                caption=tiny_caption_cfg(demo_coco))))
    model.init_weights()
    model.train()
    fixed = dict(
        detection=batches(demo_coco, 'detection'),
        segmentation=batches(demo_coco, 'segmentation'),
        caption=dict(caption_batch(demo_coco), task='caption'))
    optim = OptimWrapper(
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                          lr=2e-3))
    first, last = {}, {}
    for step in range(20):
        for task, batch in fixed.items():
            log = model.train_step(dict(batch), optim)
            last[task] = log['loss'].item()
            first.setdefault(task, last[task])
    for task in fixed:
        assert last[task] < 0.85 * first[task], (task, first[task], last[task])


def test_init_weights_reaches_every_task_model(tmp_path):
    model = build_visft(
        stage=1, directory=tmp_path)  # calls model.init_weights()
    for name, task in model.tasks.items():
        assert task.is_init, name
    # e.g. Mask2Former's level embedding is initialised by its init_weights()
    assert model.tasks.segmentation.panoptic_head.level_embed.weight.abs().max(
    ) < 10
