# Zero-shot ImageNet-1k (val) classification with EVA01-CLIP-g/14, top-1/top-5:
# mmpretrain's CLIP zero-shot config with EVA-CLIP's model and preprocessing.
_base_ = 'mmpretrain::clip/clip_vit-base-p16_zeroshot-cls_in1k.py'

clip_checkpoint = 'checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt'
# The EVA-ViT-G under test (base or ViSFT-merged): $BACKBONE_CHECKPOINT
# (tools/test.py --backbone), by default the CLIP file's own vision tower.
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt}}'

# Normalisation is EVACLIP's default: OpenAI CLIP mean/std on RGB, as EVA-CLIP.
model = dict(
    _delete_=True,
    type='visft_mm.models.EVACLIP',  # by import path: see visft_mm/datasets/benchmarks.py
    clip_checkpoint=clip_checkpoint,
    backbone_checkpoint=backbone_checkpoint,
    vision_arch='eva-g',
    open_clip_model='EVA01-g-14',
    class_names='imagenet',
    prompt_templates='openai_imagenet')  # CLIP's 80 ImageNet prompts

# EVA-CLIP's test transform: PIL decoding, bicubic resize of the short side to
# 224, centre crop 224 (mmpretrain's CLIP config squashes to 224x224 instead).
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    # mmengine's default pseudo_collate hands MultiModalDataPreprocessor a
    # list of images, which it takes for multiple views of one image.
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='visft_mm.datasets.ImageNet', pipeline=test_pipeline))
