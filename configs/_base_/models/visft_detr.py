# ViSFT detection head as mmdet's DETR on the shared ViT map.
#
# `detection_model` is a whole mmdet detector whose backbone is the identity
# `FeaturesAsInput`: it takes the shared EVA-ViT features `(feat,)` (one map,
# stride 14, C channels) in place of images. Task fragments use distinct
# names (`detection_model`, `segmentation_model`, ...) so that one config can
# inherit all of them: mmengine refuses a key that two sibling bases both
# define, which is also why the CLIP mean/std below are written out in every
# fragment rather than inherited from a shared base (tests check that the
# copies agree).
#
# Values are those of `mmdet::detr/detr_r50_8xb2-150e_coco.py` except:
# - neck in_channels [1408], the EVA-ViT-G width (1792 for EVA-ViT-E);
# - FFN 1024 in encoder and decoder (paper; mmdet 2048);
# - DetDataPreprocessor: CLIP mean/std (EVA-CLIP's statistics; the official
#   code used ImageNet's) and pad_size_divisor 14, the ViT patch, so
#   each feature cell covers exactly 14x14 input pixels.
# Deliberate differences from the official UniT-style head, which mmdet's DETR
# has no switch for: one width (256) for encoder and decoder instead of a
# 128-d encoder projected to the 256-d decoder, no prepended task token, no
# encoder residual (memory = src + encoder(src)), and 80 contiguous classes
# (mmdet's cat2label) instead of 91 raw COCO ids.
detection_model = dict(
    type='DETR',
    num_queries=100,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],  # CLIP
        std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
        bgr_to_rgb=True,
        pad_size_divisor=14),
    backbone=dict(type='visft_mm.FeaturesAsInput'),
    neck=dict(
        type='ChannelMapper',
        in_channels=[1408],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(  # DetrTransformerEncoder
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=1024,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True)))),
    decoder=dict(
        # DetrTransformerDecoder; intermediate outputs feed the aux losses
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=256, num_heads=8, dropout=0.1, batch_first=True),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=1024,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=128, normalize=True),
    bbox_head=dict(
        type='DETRHead',
        num_classes=80,
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
    test_cfg=dict(max_per_img=100))
