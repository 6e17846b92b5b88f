# ViSFT stage 1 for EVA-ViT-E, instance segmentation in the layout of the
# released heads: the EVA-ViT-E stage-1 segmentation config with
# configs/_base_/models/visft_mask2former_official.py merged into its task.
_base_ = [
    './eva_4b_stage1_mask2former_8xb1-150k_coco.py',
    '../_base_/models/visft_mask2former_official.py'
]
model = dict(tasks=dict(segmentation=_base_.segmentation_model_to_official))
