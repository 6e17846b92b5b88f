# ViSFT stage 1, instance segmentation, with the head in the layout of the
# released heads (class rows shifted by one, the FPN conv pair on the one ViT
# map, grey-128 padding before the ImageNet normalisation): the EVA-ViT-G
# stage-1 segmentation config with configs/_base_/models/
# visft_mask2former_official.py merged into its task.
_base_ = [
    './eva_1b_stage1_mask2former_8xb1-150k_coco.py',
    '../_base_/models/visft_mask2former_official.py'
]
model = dict(tasks=dict(segmentation=_base_.segmentation_model_to_official))
