# ViSFT stage 1 for EVA-ViT-E (4.4B, 1792 wide, post-norm): as the EVA-ViT-G
# config, with the EVA02-CLIP-bigE-14-plus visual tower.
_base_ = './eva_1b_stage1_detr_8xb1-150k_coco.py'
model = dict(
    backbone=dict(
        module=dict(
            arch='eva-e',
            init_cfg=dict(
                checkpoint='checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt'))),
    tasks=dict(detection=dict(neck=dict(in_channels=[1792]))))
