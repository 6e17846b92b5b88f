# BLIP-2 OPT-2.7b zero-shot captioning on the NoCaps validation split (4,500
# Open Images images), with BLIP-2's own vision backbone or a ViSFT one
# (`backbone_checkpoint`).
#
# mmpretrain's BLIP-2 caption config, evaluation only: images resized to 364,
# prompt "a photo of", beam search with 5 beams, min_length 1 (fixed in
# mmpretrain's Blip2Caption). Differences from it:
# - at most max_txt_len=80 new tokens, LAVIS's NoCaps limit (LAVIS's
#   min_len=10 cannot be set through mmpretrain's Blip2Caption);
# - vision features are the output of the last of the 39 blocks, as in LAVIS
#   (mmpretrain's out_indices=-2 takes the 38th);
# - one sample per image (visft_mm's NoCapsImages; mmpretrain's NoCaps repeats
#   each image once per reference caption);
# - BLEU-1..4, METEOR, ROUGE-L and CIDEr over all images by visft_mm's
#   CaptionMetric (no SPICE, which needs a download; no in/near/out-domain
#   breakdown).
#
#   python tools/test.py \
#       configs/visft/eval/blip2_opt2.7b_caption_nocaps.py \
#       [--backbone PATH]
_base_ = [
    'mmpretrain::blip2/blip2-opt2.7b_8xb32_caption.py',
    '../../_base_/models/blip2_eval.py',
]
# NoCapsImages (visft_mm.benchmarks)
custom_imports = dict(
    imports=['visft_mm.benchmarks'], allow_failed_imports=False)

# Local inputs; tools/test.py says how to obtain any that is missing.
blip2_checkpoint = ('checkpoints/'
                    'blip2-opt2.7b_3rdparty_pretrain_20230505-b51db4e1.pth')
opt_dir = 'checkpoints/opt-2.7b'
qformer_config_dir = 'checkpoints/bert-base-uncased'
data_root = 'data/nocaps'
ann_file = 'annotations/nocaps_val_4500_captions.json'
# The vision backbone: a ViSFT EVA-ViT-G in BEiTViT layout from
# $BACKBONE_CHECKPOINT (tools/test.py --backbone PATH sets it), or None,
# BLIP-2's own, when it is unset.
backbone_checkpoint = (None if '{{$BACKBONE_CHECKPOINT:own}}' == 'own' else
                       '{{$BACKBONE_CHECKPOINT:own}}')

default_scope = 'mmpretrain'
load_from = blip2_checkpoint
model = dict(
    tokenizer=dict(name_or_path=opt_dir),
    text_backbone=dict(name_or_path=opt_dir),
    multimodal_backbone=dict(model_style=qformer_config_dir),
    vision_backbone=dict(out_indices=-1),
    max_txt_len=80)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(364, 364),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='PackInputs', meta_keys=['image_id']),
]
test_dataloader = dict(
    batch_size=16,
    num_workers=5,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    # mmpretrain's tools/test.py adds collate_fn; ours does not
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        _delete_=True,
        type='visft_mm.NoCapsImages',
        data_root=data_root,
        data_prefix=dict(img_path='images'),
        ann_file=ann_file,
        pipeline=test_pipeline))
test_evaluator = dict(
    _delete_=True,
    type='visft_mm.CaptionMetric',
    ann_file=f'{data_root}/{ann_file}')
test_cfg = dict()

# evaluation only
train_dataloader = train_cfg = optim_wrapper = param_scheduler = None
val_dataloader = val_cfg = val_evaluator = None

nocaps_how = (
    'download nocaps_val_4500_captions.json (https://nocaps.org/download) '
    'into data/nocaps/annotations/')
required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.ann_file',
        root='test_dataloader.dataset.data_root',
        what='NoCaps val annotations',
        how=nocaps_how),
    dict(
        key='test_evaluator.ann_file',
        what='NoCaps val references',
        how=nocaps_how),
    dict(
        key='test_dataloader.dataset.data_prefix.img_path',
        root='test_dataloader.dataset.data_root',
        what='NoCaps val images',
        how="download each image of the annotation file's images[].coco_url "
        'into data/nocaps/images/ under its file_name'),
])
