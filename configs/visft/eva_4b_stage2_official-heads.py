# ViSFT stage 2 for EVA-ViT-E on the released stage-1 heads
# (eva_e_{detection,segment,caption}_heads.ckpt): the EVA-ViT-G config
# eva_1b_stage2_official-heads.py with the EVA-ViT-E tower of eva_4b_stage2.py
# and the task models on 1792 channels, from one file written by
# tools/model_converters/official_heads2visft.py.
_base_ = './eva_1b_stage2_official-heads.py'
official_heads_checkpoint = 'checkpoints/visft_official_heads_eva_e.pth'
model = dict(
    backbone=dict(
        module=dict(
            module=dict(
                arch='eva-e',
                init_cfg=dict(
                    checkpoint='checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt')))
    ),
    tasks=dict(
        caption=dict(head=dict(in_channels=1792)),
        segmentation=dict(panoptic_head=dict(in_channels=[1792])),
        detection=dict(neck=dict(in_channels=[1792]))),
    task_checkpoints=dict(
        caption=official_heads_checkpoint,
        segmentation=official_heads_checkpoint,
        detection=official_heads_checkpoint))
