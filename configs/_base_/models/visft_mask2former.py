# ViSFT instance segmentation head as mmdet's Mask2Former on the shared ViT
# map. Like `detection_model` (see visft_detr.py for why the names differ per
# task and why the CLIP mean/std are written out here), `segmentation_model` is
# a whole mmdet model whose identity backbone `FeaturesAsInput` takes the
# shared features `(feat,)` in place of images.
#
# Values are those of `mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py`
# (instance segmentation, 80 classes, no stuff) except:
# - ONE input level, as in the paper: in_channels [1408] (EVA-ViT-G; 1792 for
#   EVA-ViT-E) at its true stride 14 (the official code declares a fake
#   stride 32), pixel-decoder encoder and transformer decoder on 1 level
#   (num_outs=1, num_levels=1, num_transformer_feat_level=1). Mask features
#   are therefore at stride 14, not 4;
# - pixel-decoder encoder FFN 512 and transformer-decoder FFN 1024 (official;
#   mmdet 1024 and 2048);
# - DetDataPreprocessor: CLIP mean/std (EVA-CLIP's statistics; the official
#   code used ImageNet's), pad_size_divisor 14 (the ViT patch) and no LSJ batch
#   padding to 1024 (a dataset choice, left to the pipeline);
# - the pixel decoder is visft_mm's AnyDeviceMSDeformAttnPixelDecoder: mmdet's,
#   whose deformable attention falls back to mmcv's PyTorch code where mmcv has
#   no compiled kernel for the device (a GPU with the CPU-ops mmcv that
#   tools/misc/install_env.sh builds). Same arguments and state dict.
# Known difference of mmdet's MSDeformAttnPixelDecoder from the official one:
# with a single input level mmdet builds no lateral/output conv pair, so its
# mask features are Conv1x1(encoder output); the official decoder (log2(32/4)
# = 3 "FPN levels" of which only one exists) adds one lateral Conv1x1(C->256,
# GN) of the same ViT map to the encoder output and passes the sum through a
# Conv3x3(GN, ReLU) before the mask Conv1x1.
# The loss runs on every image of the batch (the official criterion used only
# batch[0]), and labels are mmdet's contiguous 0..79 (the official mapping to
# 1..80, where index 80 is the no-object class, trained toothbrush as
# background).
segmentation_model = dict(
    type='Mask2Former',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],  # CLIP
        std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
        bgr_to_rgb=True,
        pad_size_divisor=14,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=False),
    backbone=dict(type='visft_mm.FeaturesAsInput'),
    panoptic_head=dict(
        type='Mask2FormerHead',
        in_channels=[1408],  # passed to the pixel decoder
        strides=[14
                 ],  # recorded for readers; Mask2FormerHead itself ignores it
        feat_channels=256,
        out_channels=256,
        num_things_classes=80,
        num_stuff_classes=0,
        num_queries=100,
        num_transformer_feat_level=1,
        pixel_decoder=dict(
            type='visft_mm.AnyDeviceMSDeformAttnPixelDecoder',
            # the head passes in_channels on but not strides; the stride only
            # scales reference points that are then normalised, so any value
            # computes the same, but 14 is the truth
            strides=[14],
            num_outs=1,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(  # DeformableDetrTransformerEncoder
                num_layers=6,
                layer_cfg=dict(
                    # AnyDeviceMultiScaleDeformableAttention
                    self_attn_cfg=dict(
                        embed_dims=256,
                        num_heads=8,
                        num_levels=1,
                        num_points=4,
                        dropout=0.0,
                        batch_first=True),
                    ffn_cfg=dict(
                        embed_dims=256,
                        feedforward_channels=512,
                        num_fcs=2,
                        ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(num_feats=128, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=128, normalize=True),
        transformer_decoder=dict(  # Mask2FormerTransformerDecoder, post-norm
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=256, num_heads=8, dropout=0.0,
                    batch_first=True),
                cross_attn_cfg=dict(
                    embed_dims=256, num_heads=8, dropout=0.0,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=256,
                    feedforward_channels=1024,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True))),
            init_cfg=None),
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * 80 + [0.1]),  # last entry: no-object
        loss_mask=dict(
            type='CrossEntropyLoss',
            use_sigmoid=True,
            reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0)),
    panoptic_fusion_head=dict(
        type='MaskFormerFusionHead',
        num_things_classes=80,
        num_stuff_classes=0,
        loss_panoptic=None,
        init_cfg=None),
    train_cfg=dict(
        num_points=12544,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=2.0),
                dict(
                    type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)
            ]),
        sampler=dict(type='MaskPseudoSampler')),
    test_cfg=dict(
        panoptic_on=False,
        semantic_on=False,
        instance_on=True,
        max_per_image=100,
        iou_thr=0.8,
        filter_low_score=True),
    init_cfg=None)
