# ViSFT stage 2 for EVA-ViT-E on the released stage-1 heads
# (eva_e_{detection,segment,caption}_heads.ckpt): eva_4b_stage2.py with the
# task models of eva_1b_stage2_official-heads.py on 1792 channels, from one
# file written by tools/model_converters/official_heads2visft.py.
_base_ = [
    './eva_4b_stage2.py', '../_base_/models/visft_detr_official.py',
    '../_base_/models/visft_mask2former_official.py',
    '../_base_/models/visft_caption_official.py'
]
official_heads_checkpoint = 'checkpoints/visft_official_heads_eva_e.pth'
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
required_paths = dict(model=[
    dict(
        key='model.task_checkpoints.detection',
        what='the released stage-1 heads, converted',
        how='download eva_{g,e}_{detection,segment,caption}_heads.ckpt from '
        'https://huggingface.co/TencentARC/ViSFT and convert them with '
        'tools/model_converters/official_heads2visft.py'),
    dict(
        key='model.tasks.caption.head.vocab_file',
        what='the official caption word map (9490 words)',
        how="build it from Karpathy's dataset_coco.json with "
        'tools/misc/build_caption_vocab.py --official'),
])
