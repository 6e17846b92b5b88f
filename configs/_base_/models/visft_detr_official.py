# ViSFT's official detection head (UniT's DETR, reference §4.2), the layout
# of the released `eva_{g,e}_detection_heads.ckpt`; visft_mm's
# `detection_state_dict` (visft_mm/checkpoints/official_heads.py) maps such a
# file onto this model.
#
# As `visft_detr.py`, a whole mmdet detector whose backbone is the identity
# `FeaturesAsInput` (the shared ViT map, stride 14, C channels), named
# `official_detection_model` so that a config can inherit it next to
# `detection_model`.
# It differs from `visft_detr.py` where the official head does:
# - `UniTDETR`: 1x1 input projection C -> 128 (the neck), a 128-d encoder
#   (6 post-norm layers, 8 heads, FFN 1024) with a prepended task token and
#   the residual memory = src + encoder(src), projected to a 256-d decoder
#   (6 post-norm layers, 8 heads, FFN 1024); dropout 0.1 throughout;
# - `UniTDETRHead`: 92 classifier rows, raw COCO category ids 0..90 plus
#   no-object; the head maps the datasets' contiguous labels to rows for the
#   loss and predicted rows back to labels, so CocoMetric works unchanged.
#   `test_cfg.official_inference=True` gives the official post-processing;
#   the default keeps the 100 best queries by their best COCO category;
# - ImageNet mean/std (the official heads' inputs; the ViT was pretrained
#   with CLIP's, reference §10.5) and no padding: the official per-GPU batch
#   of 1 image is never padded, and the ViT's patch conv drops the last
#   0-13 pixels of a side that is no multiple of 14.
# `neck.in_channels` is the ViT width: 1408 (EVA-ViT-G) or 1792 (EVA-ViT-E).
official_detection_model = dict(
    type='visft_mm.UniTDETR',
    num_queries=100,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(type='visft_mm.FeaturesAsInput'),
    neck=dict(
        type='ChannelMapper',
        in_channels=[1408],
        kernel_size=1,
        out_channels=128,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(  # DetrTransformerEncoder
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=128,
                num_heads=8,
                attn_drop=0.1,
                dropout_layer=dict(type='Dropout', drop_prob=0.1),
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=128,
                feedforward_channels=1024,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True)))),
    # DetrTransformerDecoder; intermediate outputs feed the aux losses
    decoder=dict(
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=256,
                num_heads=8,
                attn_drop=0.1,
                dropout_layer=dict(type='Dropout', drop_prob=0.1),
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=256,
                num_heads=8,
                attn_drop=0.1,
                dropout_layer=dict(type='Dropout', drop_prob=0.1),
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=1024,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=64, normalize=True),
    bbox_head=dict(
        type='visft_mm.UniTDETRHead',
        num_classes=91,  # rows 0..90; row 91 is no-object
        embed_dims=256,
        # softmax CE with weight 0.1 on no-object (the official eos_coef)
        loss_cls=dict(
            type='CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100, official_inference=False))
