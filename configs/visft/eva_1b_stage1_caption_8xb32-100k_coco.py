# ViSFT stage 1, captioning: the frozen EVA-ViT-G under the Show-Attend-Tell
# head on COCO Karpathy (8 GPUs x 32 captions, 100k iterations, lr 4e-4, as
# the official run).
_base_ = [
    '../_base_/models/eva_vit_g.py', '../_base_/models/visft_caption.py',
    '../_base_/datasets/visft_coco.py', '../_base_/schedules/visft_stage1.py',
    '../_base_/default_runtime.py'
]
max_iters = 100000
model = dict(
    type='ViSFT',
    backbone=dict(type='visft_mm.FrozenBackbone', module=_base_.eva_backbone),
    tasks=dict(caption=_base_.caption_model))
optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=2000,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
train_dataloader = dict(
    _base_.caption_train_dataloader, _delete_=True, batch_size=32)
val_dataloader = dict(_delete_=True, **_base_.caption_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, **_base_.caption_val_evaluator)
test_evaluator = val_evaluator
# inputs that tools/train.py and tools/test.py check first
required_paths = dict(
    backbone=[_base_.stage1_backbone_input], **_base_.caption_required_paths)
