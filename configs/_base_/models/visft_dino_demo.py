# Detection head for the CPU demo: mmdet's DINO on the single stride-14 ViT
# map, 4 demo classes, small ViT (192 wide; a config using another width
# overrides `detection_model.neck.in_channels`).
#
# Not the paper's head (that is visft_detr.py): DETR learns too slowly for a
# demo of minutes on a CPU, and DINO's two-stage query selection, box
# refinement and denoising queries converge far faster on the same features.
# Measured with 50 denoising queries on the demo data (400 train / 100 val
# images, 112 px), features of a frozen, randomly initialised 4-layer
# 192-wide EVAViT, AdamW 2e-4, batch 8, 2 CPU cores: this head reached val
# bbox mAP 0.15 / 0.40 / 0.55 (mAP@50 0.74) after 200 / 400 / 600
# iterations at about 0.4 s per iteration, while visft_detr_demo.py stayed at
# mAP 0.00 after 600 iterations (0.3 s each).
# It takes the slot of the paper's head (`detection_model`), so a config
# inherits one of the two. Values follow
# `mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py` except: one feature level
# (num_feature_levels=1, ChannelMapper num_outs=1, num_levels=1 in the
# deformable attention), 3+3 layers, 30 matching queries (scenes hold a few
# objects, and a 112 px image has only 8x8 encoder tokens to select queries
# from), num_dn_queries=20 (below), and the CLIP mean/std with
# pad_size_divisor 14 of the paper fragments, and visft_mm's AnyDeviceDINO
# and AnyDeviceFocalLoss for mmdet's DINO and FocalLoss: the same modules and
# state dict, whose deformable attention and focal loss fall back to mmcv's
# and mmdet's PyTorch code where mmcv has no compiled kernel for the device
# (the CPU, or a GPU with the CPU-ops mmcv that tools/misc/install_env.sh
# builds).
# `init_weights()` must run before training (the Runner does it): DINO's
# level_embed is uninitialised memory until then.
detection_model = dict(
    type='visft_mm.AnyDeviceDINO',
    # matching queries; two-stage selection picks them among the encoder's
    # tokens, so at most one per feature cell: 30 fits images down to 84 px
    num_queries=30,
    num_feature_levels=1,
    with_box_refine=True,
    as_two_stage=True,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],  # CLIP
        std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
        bgr_to_rgb=True,
        pad_size_divisor=14),
    backbone=dict(type='visft_mm.FeaturesAsInput'),
    neck=dict(
        type='ChannelMapper',
        in_channels=[192],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=1),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_levels=1, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=256, feedforward_channels=1024, ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=256, num_levels=1, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=256, feedforward_channels=1024, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(
        num_feats=128, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(
        type='DINOHead',
        num_classes=4,
        sync_cls_avg_factor=True,
        loss_cls=dict(
            type='visft_mm.AnyDeviceFocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    # Denoising groups of the batch's largest scene: 20 // 3 objects = 6
    # groups, each a positive and a negative query per object, so 36
    # denoising queries beside the 30 matching ones. With 50 (96 denoising
    # queries) the decoder ran 126 queries per image and the demo's stage 1
    # reached bbox mAP 0.359 after 600 iterations at 0.8 s each (one thread,
    # beside another run, as `make demo` runs it); with 20, 0.346 at 0.58 s;
    # with 10, 0.318 at 0.52 s. 20 keeps stage 1 within the demo's time.
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=20)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='FocalLossCost', weight=2.0),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))
