# Demo stage 2: LoRA (rank 64, alpha 1, q and v) on the demo ViT, the three
# frozen stage-1 heads, one task per iteration at the paper's ratios.
_base_ = [
    '../../_base_/models/eva_vit_demo.py',
    '../../_base_/models/visft_dino_demo.py',
    '../../_base_/models/visft_mask2former_demo.py',
    '../../_base_/models/visft_caption.py',
    '../../_base_/datasets/visft_demo_coco.py',
    '../../_base_/schedules/visft_demo_stage2.py'
]
max_iters = 300
stage1 = 'work_dirs/visft_demo/'
demo_caption_head = dict(
    in_channels=192,
    vocab_file='data/demo_coco/annotations/vocab.json',
    encoded_size=8,
    max_decode_len=16)
model = dict(
    type='ViSFT',
    backbone=dict(
        type='LoRAModel',
        module=dict(
            type='visft_mm.FrozenBackbone', module=_base_.eva_backbone),
        targets=[dict(type='qkv', slices='qv')],
        rank=64,
        alpha=1,
        drop_rate=0.),
    tasks=dict(
        caption=dict(
            _base_.caption_model,
            head=dict(_base_.caption_model.head, **demo_caption_head)),
        segmentation=_base_.segmentation_model,
        detection=_base_.detection_model),
    freeze_tasks=True,
    task_checkpoints=dict(
        caption=stage1 + 'stage1_caption/iter_300.pth',
        segmentation=stage1 + 'stage1_segmentation/iter_400.pth',
        detection=stage1 + 'stage1_detection/iter_600.pth'))
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
train_dataloader = dict(
    caption=_base_.caption_train_dataloader,
    segmentation=_base_.segmentation_train_dataloader,
    detection=_base_.detection_train_dataloader)
val_dataloader = dict(
    caption=_base_.caption_val_dataloader,
    segmentation=_base_.segmentation_val_dataloader,
    detection=_base_.detection_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(
    caption=_base_.caption_val_evaluator,
    segmentation=_base_.segmentation_val_evaluator,
    detection=_base_.detection_val_evaluator)
test_evaluator = val_evaluator
# inputs that tools/train.py and tools/test.py check first
required_paths = dict(
    backbone=[_base_.stage2_backbone_input],
    **_base_.caption_required_paths,
    **_base_.segmentation_required_paths,
    **_base_.detection_required_paths,
    stage1=[
        dict(
            key=f'model.task_checkpoints.{task}',
            what=f'stage-1 {task} checkpoint',
            how='run stage 1 first: `make demo`, or `python tools/train.py '
            f'configs/visft/demo/demo_stage1_{task}.py '
            f'--work-dir work_dirs/visft_demo/stage1_{task}`',
            training_only=True)
        for task in ('caption', 'segmentation', 'detection')
    ])
