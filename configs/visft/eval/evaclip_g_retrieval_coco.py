# Zero-shot image-text retrieval on COCO (Karpathy 5k test) with EVA01-CLIP-g/14:
# i2t and t2i Recall@1/5/10.
_base_ = [
    'mmpretrain::_base_/datasets/coco_retrieval.py',
    'mmpretrain::_base_/default_runtime.py',
]

clip_checkpoint = 'checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt'
# The EVA-ViT-G under test (base or ViSFT-merged): $BACKBONE_CHECKPOINT
# (tools/test.py --backbone), by default the CLIP file's own vision tower.
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt}}'

# Normalisation is EVACLIP's default: OpenAI CLIP mean/std on RGB, as EVA-CLIP.
model = dict(
    type='visft_mm.models.EVACLIP',  # by import path: see visft_mm/datasets/benchmarks.py
    clip_checkpoint=clip_checkpoint,
    backbone_checkpoint=backbone_checkpoint,
    vision_arch='eva-g',
    open_clip_model='EVA01-g-14')

# EVA-CLIP's test transform (PIL, bicubic short side 224, centre crop 224);
# captions go to the CLIP tokenizer as they are, without CleanCaption.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs', algorithm_keys=['text', 'gt_text_id', 'gt_image_id'],
         meta_keys=['image_id']),
]
test_dataloader = dict(
    _delete_=True,
    batch_size=64,
    num_workers=8,
    persistent_workers=False,
    # mmengine's default pseudo_collate hands MultiModalDataPreprocessor a
    # list of images, which it takes for multiple views of one image.
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='visft_mm.datasets.COCORetrieval',
        data_root='data/coco',
        ann_file='annotations/caption_karpathy_test2014.json',
        pipeline=test_pipeline,
        test_mode=True),
    sampler=dict(type='SequentialSampler', subsample_type='sequential'))
test_evaluator = dict(type='visft_mm.evaluation.RetrievalRecall', topk=(1, 5, 10))
test_cfg = dict(type='RetrievalTestLoop')

train_dataloader = None
train_cfg = None
val_dataloader = None
val_evaluator = None
val_cfg = None
