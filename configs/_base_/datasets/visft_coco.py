# COCO data of ViSFT's three tasks, with the official pipelines built from
# mmdet's transforms. mmdet's COCO instance base provides the dataset type,
# data root and evaluator defaults. Each task gets its
# `<task>_train_dataloader`, `<task>_val_dataloader` and
# `<task>_val_evaluator`. Stage-1 configs pick one task; stage 2 uses all
# three, keyed by task. Demo configs swap this file for `visft_demo_coco.py`,
# which defines the same names.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

data_root = 'data/coco/'
backend_args = None

# Detection (DETR recipe, long side <= 672): flip, then either a multi-scale
# resize or a resize-crop-resize.
detection_scales = [(s, 672) for s in (480, 512, 544, 576, 608, 640, 672)]
detection_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [
                dict(
                    type='RandomChoiceResize',
                    scales=detection_scales,
                    keep_ratio=True)
            ],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 4200), (500, 4200), (600, 4200)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=detection_scales,
                    keep_ratio=True)
            ],
        ]),
    dict(type='PackDetInputs'),
]
detection_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # the official RandomResize([800], max_size=672) never reaches 800: it is
    # a long side of 672
    dict(type='Resize', scale=(672, 672), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]

# Instance segmentation (large-scale jitter to a 1024 crop, Mask2Former
# recipe).
segmentation_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=(1024, 1024),
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size=(1024, 1024),
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
segmentation_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]

# Captioning (Karpathy split, images resized to 256x256, no augmentation).
caption_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(256, 256), keep_ratio=False),
    dict(
        type='mmpretrain.PackInputs',
        algorithm_keys=['gt_caption'],
        meta_keys=['image_id', 'img_path', 'ori_shape', 'img_shape']),
]
caption_test_pipeline = caption_train_pipeline

coco_train = dict(
    type='CheckedCocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    backend_args=backend_args)
coco_val = dict(
    type='CheckedCocoDataset',
    data_root=data_root,
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img='val2017/'),
    test_mode=True,
    backend_args=backend_args)
karpathy = dict(
    type='CocoCaptionDataset',
    data_root=data_root,
    ann_file='annotations/dataset_coco.json',
    data_prefix=dict(img_path=''))

# Training numbers its draws and loads each under a seed of (seed, draw,
# index), so a run resumed with data workers augments as the uninterrupted one.
infinite = dict(type='NumberedInfiniteSampler', shuffle=True)
in_order = dict(type='DefaultSampler', shuffle=False)

detection_train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=infinite,
    dataset=dict(
        type='SeedPerDrawDataset',
        dataset=dict(**coco_train, pipeline=detection_train_pipeline)))
detection_val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=in_order,
    dataset=dict(**coco_val, pipeline=detection_test_pipeline))
detection_val_evaluator = dict(
    type='CocoMetric',
    metric='bbox',
    format_only=False,
    ann_file=data_root + 'annotations/instances_val2017.json')

segmentation_train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=infinite,
    dataset=dict(
        type='SeedPerDrawDataset',
        dataset=dict(**coco_train, pipeline=segmentation_train_pipeline)))
segmentation_val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=in_order,
    dataset=dict(**coco_val, pipeline=segmentation_test_pipeline))
segmentation_val_evaluator = dict(
    type='CocoMetric',
    metric='segm',
    format_only=False,
    ann_file=data_root + 'annotations/instances_val2017.json')

caption_train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=infinite,
    dataset=dict(
        type='SeedPerDrawDataset',
        dataset=dict(
            **karpathy, split='train', pipeline=caption_train_pipeline)))
caption_val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=in_order,
    dataset=dict(
        **karpathy,
        split='val',
        test_mode=True,
        pipeline=caption_test_pipeline))
caption_val_evaluator = dict(type='CaptionMetric')

# The inputs of each task, for the `required_paths` of the configs
# (visft_mm/utils/required_paths.py): tools/train.py and tools/test.py check
# them before building anything (tools/test.py skips `training_only` ones).
# Detection and segmentation read the same files.
annotations_how = ('download http://images.cocodataset.org/annotations/'
                   'annotations_trainval2017.zip and unzip it into data/coco/')
detection_inputs = [
    dict(
        key='coco_train.ann_file',
        root='coco_train.data_root',
        what='COCO train2017 instance annotations',
        how=annotations_how,
        training_only=True),
    dict(
        key='coco_train.data_prefix.img',
        root='coco_train.data_root',
        what='COCO train2017 images',
        how='download http://images.cocodataset.org/zips/train2017.zip '
        'and unzip it into data/coco/',
        training_only=True),
    dict(
        key='coco_val.ann_file',
        root='coco_val.data_root',
        what='COCO val2017 instance annotations',
        how=annotations_how),
    dict(
        key='coco_val.data_prefix.img',
        root='coco_val.data_root',
        what='COCO val2017 images',
        how='download http://images.cocodataset.org/zips/val2017.zip '
        'and unzip it into data/coco/'),
]
segmentation_inputs = detection_inputs
caption_inputs = [
    dict(
        key='karpathy.ann_file',
        root='karpathy.data_root',
        what="Karpathy's COCO split",
        how='download caption_datasets.zip from '
        'https://cs.stanford.edu/people/karpathy/deepimagesent/ and put its '
        'dataset_coco.json into data/coco/annotations/'),
    dict(
        key='karpathy.data_root',
        subpath='train2014',
        what='COCO train2014 images',
        how='download http://images.cocodataset.org/zips/train2014.zip '
        'and unzip it into data/coco/',
        training_only=True),
    dict(
        key='karpathy.data_root',
        subpath='val2014',
        what='COCO val2014 images',
        how='download http://images.cocodataset.org/zips/val2014.zip '
        'and unzip it into data/coco/'),
]
# the word map the caption head reads, at the path the config gives it
caption_word_map_input = dict(
    key='model.tasks.caption.head.vocab_file',
    what='caption word map',
    how='build it from the Karpathy split: '
    '`python tools/misc/build_caption_vocab.py '
    'data/coco/annotations/dataset_coco.json {path}`')
# the `required_paths` groups of each task
caption_required_paths = dict(
    caption_data=caption_inputs, word_map=[caption_word_map_input])
segmentation_required_paths = dict(segmentation_data=segmentation_inputs)
detection_required_paths = dict(detection_data=detection_inputs)
