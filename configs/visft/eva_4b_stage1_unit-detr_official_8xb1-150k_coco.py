# ViSFT stage 1, detection, with the official head (UniT's DETR, the layout
# of the released eva_e_detection_heads.ckpt): the EVA-ViT-E DETR config with
# its detection model swapped for visft_detr_official.py on 1792 channels.
_base_ = [
    './eva_4b_stage1_detr_8xb1-150k_coco.py',
    '../_base_/models/visft_detr_official.py'
]
model = dict(
    tasks=dict(
        detection=dict(
            _base_.official_detection_model,
            _delete_=True,
            neck=dict(
                _base_.official_detection_model.neck, in_channels=[1792]))))
