# Demo stage 1, captioning: the frozen demo ViT under the Show-Attend-Tell
# head, on the demo word map; the 8x8 token map is read as 64 pixels.
_base_ = [
    '../../_base_/models/eva_vit_demo.py',
    '../../_base_/models/visft_caption.py',
    '../../_base_/datasets/visft_demo_coco.py',
    '../../_base_/schedules/visft_demo_stage1.py'
]
max_iters = 300
demo_caption_head = dict(
    in_channels=192,
    vocab_file='data/demo_coco/annotations/vocab.json',
    encoded_size=8,
    max_decode_len=16)
model = dict(
    type='ViSFT',
    backbone=dict(type='visft_mm.FrozenBackbone', module=_base_.eva_backbone),
    tasks=dict(
        caption=dict(
            _base_.caption_model,
            head=dict(_base_.caption_model.head, **demo_caption_head))))
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=30,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
train_dataloader = dict(**_base_.caption_train_dataloader)
val_dataloader = dict(**_base_.caption_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(**_base_.caption_val_evaluator)
test_evaluator = val_evaluator
# inputs that tools/train.py and tools/test.py check first
required_paths = dict(
    backbone=[_base_.stage1_backbone_input], **_base_.caption_required_paths)
