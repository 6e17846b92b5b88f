# ViSFT stage 1, detection, with the official head (UniT's DETR, the layout
# of the released eva_g_detection_heads.ckpt): the EVA-ViT-G DETR config with
# its detection model swapped for visft_detr_official.py.
_base_ = [
    './eva_1b_stage1_detr_8xb1-150k_coco.py',
    '../_base_/models/visft_detr_official.py'
]
model = dict(
    tasks=dict(
        detection=dict(_delete_=True, **_base_.official_detection_model)))
