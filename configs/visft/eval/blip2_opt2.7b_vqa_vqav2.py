# BLIP-2 OPT-2.7b zero-shot VQA on the VQAv2 validation split (214,354
# questions on COCO val2014), with BLIP-2's own vision backbone or a ViSFT one
# (`backbone_checkpoint`).
#
# mmpretrain's BLIP-2 VQA config, evaluation only: images resized to 224, beam
# search with 5 beams, length_penalty -1, at most max_txt_len=10 new tokens
# (as LAVIS). Differences from it:
# - LAVIS's zero-shot prompt "Question: {} Short answer:" (mmpretrain:
#   "Question: {} Answer:");
# - vision features are the output of the last of the 39 blocks, as in LAVIS
#   (mmpretrain's out_indices=-2 takes the 38th);
# - the vision backbone is built for the 224 input (mmpretrain builds it for
#   364, so a 224-pixel position embedding is resized to 364 when loaded and
#   back at each forward);
# - the val split with mmpretrain's VQAAcc (min(1, #matching answers / 3),
#   averaged; the official VQA script averages that over the ten leave-one-out
#   subsets of the answers, which scores a little lower) instead of the
#   test-dev split written for the server.
#
#   python tools/test.py configs/visft/eval/blip2_opt2.7b_vqa_vqav2.py \
#       [--backbone PATH]
_base_ = [
    'mmpretrain::blip2/blip2-opt2.7b_8xb16_vqa.py',
    '../../_base_/models/blip2_eval.py',
]

# Local inputs; tools/test.py says how to obtain any that is missing.
blip2_checkpoint = ('checkpoints/'
                    'blip2-opt2.7b_3rdparty_pretrain_20230505-b51db4e1.pth')
opt_dir = 'checkpoints/opt-2.7b'
qformer_config_dir = 'checkpoints/bert-base-uncased'
data_root = 'data/coco'
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
    vision_backbone=dict(out_indices=-1, img_size=224),
    prompt='Question: {} Short answer:')

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(224, 224),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='CleanCaption', keys=['question']),
    dict(
        type='PackInputs',
        algorithm_keys=['question', 'gt_answer', 'gt_answer_weight'],
        meta_keys=['question_id', 'image_id']),
]
test_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    # mmpretrain's tools/test.py adds collate_fn; ours does not
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        _delete_=True,
        type='COCOVQA',
        data_root=data_root,
        data_prefix='val2014',
        question_file='annotations/v2_OpenEnded_mscoco_val2014_questions.json',
        ann_file='annotations/v2_mscoco_val2014_annotations.json',
        pipeline=test_pipeline))
test_evaluator = dict(_delete_=True, type='VQAAcc')
test_cfg = dict()

# evaluation only
train_dataloader = train_cfg = optim_wrapper = param_scheduler = None
val_dataloader = val_cfg = val_evaluator = None

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.question_file',
        root='test_dataloader.dataset.data_root',
        what='VQAv2 val questions',
        how='download https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/'
        'v2_Questions_Val_mscoco.zip (visualqa.org) and unzip it into '
        'data/coco/annotations/'),
    dict(
        key='test_dataloader.dataset.ann_file',
        root='test_dataloader.dataset.data_root',
        what='VQAv2 val answers',
        how='download https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/'
        'v2_Annotations_Val_mscoco.zip (visualqa.org) and unzip it into '
        'data/coco/annotations/'),
    dict(
        key='test_dataloader.dataset.data_prefix',
        root='test_dataloader.dataset.data_root',
        what='COCO val2014 images',
        how='download http://images.cocodataset.org/zips/val2014.zip '
        'and unzip it into data/coco/'),
])
