# ViSFT stage 2 for EVA-ViT-E on the released stage-1 heads
# (eva_e_{detection,segment,caption}_heads.ckpt): the EVA-ViT-G config
# eva_1b_stage2_official-heads.py with the EVA-ViT-E tower of eva_4b_stage2.py
# and the task models on 1792 channels, from one file written by
# tools/model_converters/official_heads2visft.py.
_base_ = ['./eva_1b_stage2_official-heads.py', '../_base_/models/eva_vit_e.py']
official_heads_checkpoint = 'checkpoints/visft_official_heads_eva_e.pth'
model = dict(
    backbone=dict(module=dict(module=_base_.eva_e_vit)),
    tasks=_base_.eva_e_task_widths,
    task_checkpoints=dict(
        caption=official_heads_checkpoint,
        segmentation=official_heads_checkpoint,
        detection=official_heads_checkpoint))
