# Zero-shot ImageNet-1k (val) classification with EVA01-CLIP-g/14,
# top-1/top-5: mmpretrain's CLIP zero-shot config with EVA-CLIP's model and
# preprocessing.
#
#   python tools/test.py configs/visft/eval/evaclip_g_zeroshot_imagenet.py \
#       [--backbone PATH]
_base_ = 'mmpretrain::clip/clip_vit-base-p16_zeroshot-cls_in1k.py'
# EVACLIP and the ImageNet variants (visft_mm.benchmarks)
custom_imports = dict(
    imports=['visft_mm.benchmarks'], allow_failed_imports=False)

# Local inputs; tools/test.py says how to obtain any that is missing.
clip_checkpoint = 'checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt'
# The EVA-ViT-G under test, base or ViSFT-merged, in any layout eva2visft.py
# reads: $BACKBONE_CHECKPOINT (tools/test.py --backbone PATH sets it), or None,
# the CLIP file's own vision tower, when it is unset.
backbone_checkpoint = (None if '{{$BACKBONE_CHECKPOINT:own}}' == 'own' else
                       '{{$BACKBONE_CHECKPOINT:own}}')

# Normalisation is EVACLIP's default: OpenAI CLIP mean/std on RGB, as EVA-CLIP.
model = dict(
    _delete_=True,
    type='visft_mm.EVACLIP',
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
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=64,
    collate_fn=dict(type='default_collate'
                    ),  # mmpretrain's tools/test.py adds it; ours does not
    dataset=dict(pipeline=test_pipeline))  # mmpretrain's ImageNet val

required_paths = dict(
    model=[
        dict(
            key='model.clip_checkpoint',
            what='EVA01-CLIP-g/14 checkpoint (original layout)',
            how='download EVA01_CLIP_g_14_psz14_s11B.pt from '
            'https://huggingface.co/QuanSun/EVA-CLIP into checkpoints/'),
        dict(
            key='model.backbone_checkpoint',
            what='EVA-ViT-G backbone under test',
            how='write a base one with tools/model_converters/eva2visft.py '
            'or a ViSFT one with tools/model_converters/merge_lora.py, '
            'or leave $BACKBONE_CHECKPOINT '
            "unset to test the CLIP file's own"),
    ],
    data=[
        dict(
            key='test_dataloader.dataset.data_root',
            subpath='val',
            what='ImageNet-1k val images',
            how='get ILSVRC2012_img_val.tar from '
            'https://image-net.org/download.php and '
            'arrange it as data/imagenet/val/<class>/*.JPEG, '
            'or data/imagenet/val/*.JPEG '
            'with meta/val.txt lines "<file> <label>"'),
    ])
