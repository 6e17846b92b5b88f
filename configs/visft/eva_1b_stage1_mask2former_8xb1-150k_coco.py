# ViSFT stage 1, instance segmentation: the frozen EVA-ViT-G under a
# Mask2Former head on COCO (8 GPUs x 1 image, 150k iterations, lr 5e-5, as
# the official run).
_base_ = [
    '../_base_/models/eva_vit_g.py', '../_base_/models/visft_mask2former.py',
    '../_base_/datasets/visft_coco.py', '../_base_/schedules/visft_stage1.py',
    '../_base_/default_runtime.py'
]
model = dict(
    type='ViSFT',
    backbone=dict(type='visft_mm.FrozenBackbone', module=_base_.eva_backbone),
    tasks=dict(segmentation=_base_.segmentation_model))
train_dataloader = dict(_delete_=True, **_base_.segmentation_train_dataloader)
val_dataloader = dict(_delete_=True, **_base_.segmentation_val_dataloader)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, **_base_.segmentation_val_evaluator)
test_evaluator = val_evaluator
# inputs that tools/train.py and tools/test.py check first
required_paths = dict(
    backbone=[_base_.stage1_backbone_input],
    **_base_.segmentation_required_paths)
