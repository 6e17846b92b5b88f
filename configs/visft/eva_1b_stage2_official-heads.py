# ViSFT stage 2 for EVA-ViT-G on the released stage-1 heads (Hugging Face
# TencentARC/ViSFT, eva_g_{detection,segment,caption}_heads.ckpt) in place of
# heads trained here: eva_1b_stage2.py with each task model in the layout of
# those files and fed as they were trained (ImageNet mean/std; detection with
# UniT's DETR on 92 raw COCO-id rows, one unpadded image per GPU;
# segmentation targets shifted one row, images padded with grey 128 before
# normalising; the caption head on the official 9490-word map, built by
# tools/misc/build_caption_vocab.py --official). The three heads come from
# one file written by tools/model_converters/official_heads2visft.py.
_base_ = [
    './eva_1b_stage2.py', '../_base_/models/visft_detr_official.py',
    '../_base_/models/visft_mask2former_official.py',
    '../_base_/models/visft_caption_official.py'
]
official_heads_checkpoint = 'checkpoints/visft_official_heads_eva_g.pth'
model = dict(
    tasks=dict(
        caption=_base_.caption_model_to_official,
        segmentation=_base_.segmentation_model_to_official,
        detection=dict(
            _base_.official_detection_model,
            _delete_=True,
            neck=dict(
                _base_.official_detection_model.neck,
                in_channels=_base_.model.tasks.detection.neck.in_channels))),
    task_checkpoints=dict(
        caption=official_heads_checkpoint,
        segmentation=official_heads_checkpoint,
        detection=official_heads_checkpoint))
# The heads come converted from the released files, not from stage 1.
required_paths = dict(
    word_map=[_base_.official_caption_word_map_input],
    stage1=[
        dict(
            key='model.task_checkpoints.detection',
            what='the released stage-1 heads, converted',
            how='download eva_{g,e}_{detection,segment,caption}_heads.ckpt '
            'from https://huggingface.co/TencentARC/ViSFT and convert them: '
            '`python tools/model_converters/official_heads2visft.py '
            '--detection F --segment F --caption F {path}`',
            training_only=True)
    ])
