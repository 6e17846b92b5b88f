# ViSFT stage 2 for EVA-ViT-G: heads and ViT frozen, LoRA (rank 64, alpha 1) on
# q and v of every block's qkv, one task per iteration (caption 0.4,
# segmentation 0.3, detection 0.3; per GPU: 8 captions, 1 detection image, 1
# segmentation image), gradient checkpointing, bf16. The heads come from the
# three stage-1 runs; set `task_checkpoints` to their final checkpoints.
# Checkpoints hold heads + LoRA; tools/model_converters/merge_lora.py merges
# the LoRA into the backbone.
_base_ = [
    '../_base_/models/eva_vit_g.py', '../_base_/models/visft_detr.py',
    '../_base_/models/visft_mask2former.py',
    '../_base_/models/visft_caption.py', '../_base_/datasets/visft_coco.py',
    '../_base_/schedules/visft_stage2.py', '../_base_/default_runtime.py'
]
model = dict(
    type='ViSFT',
    backbone=dict(
        type='LoRAModel',
        module=dict(
            type='visft_mm.FrozenBackbone',
            module=dict(**_base_.eva_backbone, with_cp=True)),
        targets=[dict(type='qkv', slices='qv')],
        rank=64,
        alpha=1,
        drop_rate=0.),
    tasks=dict(
        caption=_base_.caption_model,
        segmentation=_base_.segmentation_model,
        detection=_base_.detection_model),
    freeze_tasks=True,
    task_checkpoints=dict(
        caption='work_dirs/eva_1b_stage1_caption_8xb32-100k_coco/'
        'iter_100000.pth',
        segmentation='work_dirs/eva_1b_stage1_mask2former_8xb1-150k_coco/'
        'iter_150000.pth',
        detection='work_dirs/eva_1b_stage1_detr_8xb1-150k_coco/'
        'iter_150000.pth'))
# the official run keeps a checkpoint every 500 iterations (LoRA snapshots
# 5k-50k)
default_hooks = dict(checkpoint=dict(interval=500, max_keep_ckpts=-1))
train_dataloader = dict(
    _delete_=True,
    caption=_base_.caption_train_dataloader,
    segmentation=_base_.segmentation_train_dataloader,
    detection=_base_.detection_train_dataloader)
val_dataloader = dict(
    _delete_=True,
    caption=_base_.caption_val_dataloader,
    segmentation=_base_.segmentation_val_dataloader,
    detection=_base_.detection_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
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
            how='run stage 1 first: `python tools/train.py '
            f'configs/visft/eva_1b_stage1_{run}_coco.py`',
            training_only=True)
        for task, run in (('caption', 'caption_8xb32-100k'),
                          ('segmentation', 'mask2former_8xb1-150k'),
                          ('detection', 'detr_8xb1-150k'))
    ])
