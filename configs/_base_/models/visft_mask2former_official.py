# ViSFT instance segmentation head in the layout of the released stage-1
# heads (Hugging Face TencentARC/ViSFT, eva_{g,e}_segment_heads.ckpt; key
# mapping in visft_mm/checkpoints/official_heads.py).
# `segmentation_model_to_official` holds the changes that turn
# `segmentation_model` of visft_mask2former.py into that layout; a config
# that has the `segmentation_model` task merges them in:
#     model = dict(tasks=dict(
#         segmentation=_base_.segmentation_model_to_official))
# Everything else (queries, layers, widths, losses, matcher, test settings)
# is segmentation_model's, and so is the ViT width (`in_channels`) the
# config already sets.
# - the pixel decoder is visft_mm.RepeatedMapPixelDecoder: mmdet's
#   MSDeformAttnPixelDecoder given the one ViT map twice, so that besides the
#   deformable encoder on the map, a lateral Conv1x1(GN) + output
#   Conv3x3(GN, ReLU) pair on the same map feeds the mask Conv1x1, as in the
#   official decoder;
# - the head is visft_mm.ShiftedLabelMask2FormerHead: class rows shifted by
#   one as in the official label mapping (row 0 never positive, rows 1..79
#   classes 0..78, row 80 no-object and also toothbrush) for the training
#   targets, mapped back to standard COCO classes for predictions;
# - inputs as the official ones (reference §4.6): ImageNet mean/std, padded
#   with grey 128 BEFORE normalisation to a multiple of 32 and, in training,
#   to the 1024x1024 crop size.
segmentation_model_to_official = dict(
    data_preprocessor=dict(
        _delete_=True,
        type='visft_mm.PadThenNormalizeDetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        pad_value=128,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=False,
        batch_augments=[
            dict(
                type='BatchFixedSizePad',
                size=(1024, 1024),
                img_pad_value=128,
                pad_mask=True,
                mask_pad_value=0,
                pad_seg=False)
        ]),
    panoptic_head=dict(
        type='visft_mm.ShiftedLabelMask2FormerHead',
        pixel_decoder=dict(type='visft_mm.RepeatedMapPixelDecoder')))
