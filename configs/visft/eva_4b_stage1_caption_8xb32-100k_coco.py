# ViSFT stage 1 for EVA-ViT-E (4.4B, 1792 wide, post-norm): as the EVA-ViT-G
# config, with the EVA02-CLIP-bigE-14-plus visual tower.
_base_ = [
    './eva_1b_stage1_caption_8xb32-100k_coco.py',
    '../_base_/models/eva_vit_e.py'
]
model = dict(
    backbone=dict(module=_base_.eva_e_vit),
    tasks=dict(caption=_base_.eva_e_task_widths.caption))
