# Zero-shot image-text retrieval on COCO (Karpathy 5k test) with
# EVA01-CLIP-g/14: i2t and t2i Recall@1/5/10, on mmpretrain's COCO retrieval
# dataset config.
#
#   python tools/test.py configs/visft/eval/evaclip_g_retrieval_coco.py \
#       [--backbone PATH]
_base_ = [
    'mmpretrain::_base_/datasets/coco_retrieval.py',
    'mmpretrain::_base_/default_runtime.py',
]
# EVACLIP and Numpy2RetrievalRecall (visft_mm.benchmarks)
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
    type='visft_mm.EVACLIP',
    clip_checkpoint=clip_checkpoint,
    backbone_checkpoint=backbone_checkpoint,
    vision_arch='eva-g',
    open_clip_model='EVA01-g-14')

# EVA-CLIP's test transform (PIL, bicubic short side 224, centre crop 224);
# captions go to the CLIP tokenizer as they are, without CleanCaption.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(
        type='PackInputs',
        algorithm_keys=['text', 'gt_text_id', 'gt_image_id'],
        meta_keys=['image_id']),
]
test_dataloader = dict(
    _delete_=True,
    batch_size=64,
    num_workers=8,
    collate_fn=dict(type='default_collate'
                    ),  # mmpretrain's tools/test.py adds it; ours does not
    dataset=dict(
        type='COCORetrieval',
        data_root='data/coco',
        ann_file='annotations/caption_karpathy_test2014.json',
        pipeline=test_pipeline,
        test_mode=True),
    sampler=dict(type='SequentialSampler', subsample_type='sequential'))
test_evaluator = dict(type='visft_mm.Numpy2RetrievalRecall', topk=(1, 5, 10))
test_cfg = dict(type='RetrievalTestLoop')

# evaluation only
train_dataloader = train_cfg = None
val_dataloader = val_cfg = val_evaluator = None

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
            key='test_dataloader.dataset.ann_file',
            root='test_dataloader.dataset.data_root',
            what='COCO Karpathy test split (COCO format)',
            how='download '
            'https://download.openmmlab.com/mmclassification/datasets/'
            'coco_retrieval/caption_karpathy_test2014.json '
            'into data/coco/annotations/'),
        dict(
            key='test_dataloader.dataset.data_root',
            subpath='val2014',
            what='COCO val2014 images',
            how='download http://images.cocodataset.org/zips/val2014.zip '
            'and unzip it into data/coco/'),
    ])
