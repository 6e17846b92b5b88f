# ViSFT stage 2 for EVA-ViT-E: as the EVA-ViT-G config, with the
# EVA02-CLIP-bigE-14-plus visual tower (4.4B parameters, 29.4M of them LoRA)
# and the heads of the eva_4b stage-1 runs. The official script's batch
# override (2 per run) cannot be split over 8 GPUs (mmf refuses it); this
# config keeps 1 detection / 1 segmentation image and 8 captions per GPU.
_base_ = './eva_1b_stage2.py'
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
        caption='work_dirs/eva_4b_stage1_caption_8xb32-100k_coco/'
        'iter_100000.pth',
        segmentation='work_dirs/eva_4b_stage1_mask2former_8xb1-150k_coco/'
        'iter_150000.pth',
        detection='work_dirs/eva_4b_stage1_detr_8xb1-150k_coco/'
        'iter_150000.pth'))
# the stage-1 runs of EVA-ViT-E
required_paths = dict(stage1=[
    dict(
        key='model.task_checkpoints.caption',
        what='stage-1 caption checkpoint',
        how='run stage 1 first: '
        '`python tools/train.py configs/visft/'
        'eva_4b_stage1_caption_8xb32-100k_coco.py`',
        training_only=True),
    dict(
        key='model.task_checkpoints.segmentation',
        what='stage-1 segmentation checkpoint',
        how='run stage 1 first: '
        '`python tools/train.py configs/visft/'
        'eva_4b_stage1_mask2former_8xb1-150k_coco.py`',
        training_only=True),
    dict(
        key='model.task_checkpoints.detection',
        what='stage-1 detection checkpoint',
        how='run stage 1 first: '
        '`python tools/train.py configs/visft/'
        'eva_4b_stage1_detr_8xb1-150k_coco.py`',
        training_only=True),
])
