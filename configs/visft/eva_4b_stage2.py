# ViSFT stage 2 for EVA-ViT-E: as the EVA-ViT-G config, with the
# EVA02-CLIP-bigE-14-plus visual tower (4.4B parameters, 29.4M of them LoRA)
# and the heads of the eva_4b stage-1 runs. The official script's batch
# override (2 per run) cannot be split over 8 GPUs (mmf refuses it); this
# config keeps 1 detection / 1 segmentation image and 8 captions per GPU.
_base_ = ['./eva_1b_stage2.py', '../_base_/models/eva_vit_e.py']
model = dict(
    backbone=dict(module=dict(module=_base_.eva_e_vit)),
    tasks=_base_.eva_e_task_widths,
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
        key=f'model.task_checkpoints.{task}',
        what=f'stage-1 {task} checkpoint',
        how='run stage 1 first: `python tools/train.py '
        f'configs/visft/eva_4b_stage1_{run}_coco.py`',
        training_only=True)
    for task, run in (('caption', 'caption_8xb32-100k'),
                      ('segmentation', 'mask2former_8xb1-150k'),
                      ('detection', 'detr_8xb1-150k'))
])
