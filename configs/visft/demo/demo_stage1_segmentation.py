# Demo stage 1, instance segmentation: the frozen demo ViT under Mask2Former.
_base_ = [
    '../../_base_/models/eva_vit_demo.py',
    '../../_base_/models/visft_mask2former_demo.py',
    '../../_base_/datasets/visft_demo_coco.py',
    '../../_base_/schedules/visft_demo_stage1.py'
]
max_iters = 400
model = dict(
    type='ViSFT',
    backbone=dict(type='visft_mm.FrozenBackbone', module=_base_.eva_backbone),
    tasks=dict(segmentation=_base_.segmentation_model))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=50,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
train_dataloader = dict(**_base_.segmentation_train_dataloader)
val_dataloader = dict(**_base_.segmentation_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(**_base_.segmentation_val_evaluator)
test_evaluator = val_evaluator
# inputs that tools/train.py and tools/test.py check first
required_paths = dict(
    backbone=[_base_.stage1_backbone_input],
    **_base_.segmentation_required_paths)
