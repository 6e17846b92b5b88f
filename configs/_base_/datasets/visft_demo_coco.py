# The embedded demo data (tools/misc/make_demo_coco.py) for the three ViSFT
# tasks. It defines the same variable names as visft_coco.py, with sizes for
# a CPU: 112-pixel images, flips as the only augmentation, batch sizes of a
# few images. Detection and segmentation read the COCO instances json with
# mmdet's CocoDataset; captioning reads the COCO captions json.
data_root = 'data/demo_coco/'
classes = ('circle', 'square', 'triangle', 'cross')
img_size = 112

detection_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
detection_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
caption_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(
        type='mmpretrain.PackInputs',
        algorithm_keys=['gt_caption'],
        meta_keys=['image_id', 'img_path', 'ori_shape', 'img_shape']),
]

demo_train = dict(
    type='CocoDataset',
    data_root=data_root,
    metainfo=dict(classes=classes),
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'),
    filter_cfg=dict(filter_empty_gt=True))
demo_val = dict(
    type='CocoDataset',
    data_root=data_root,
    metainfo=dict(classes=classes),
    ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'),
    test_mode=True)
demo_captions = dict(type='CocoCaptionDataset', data_root=data_root)

infinite = dict(type='InfiniteSampler', shuffle=True)
in_order = dict(type='DefaultSampler', shuffle=False)
val_ann_file = data_root + 'annotations/instances_val.json'

detection_train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=infinite,
    dataset=dict(**demo_train, pipeline=detection_train_pipeline))
detection_val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    drop_last=False,
    sampler=in_order,
    dataset=dict(**demo_val, pipeline=detection_test_pipeline))
detection_val_evaluator = dict(
    type='CocoMetric', metric='bbox', ann_file=val_ann_file)

segmentation_train_dataloader = detection_train_dataloader
segmentation_val_dataloader = detection_val_dataloader
segmentation_val_evaluator = dict(
    type='CocoMetric', metric='segm', ann_file=val_ann_file)

caption_train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=infinite,
    dataset=dict(
        **demo_captions,
        ann_file='annotations/captions_train.json',
        data_prefix=dict(img_path='train/'),
        pipeline=caption_pipeline))
caption_val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    drop_last=False,
    sampler=in_order,
    dataset=dict(
        **demo_captions,
        ann_file='annotations/captions_val.json',
        data_prefix=dict(img_path='val/'),
        test_mode=True,
        pipeline=caption_pipeline))
caption_val_evaluator = dict(type='CaptionMetric')
