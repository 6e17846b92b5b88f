# Out-of-domain dense probe: ADE20K semantic segmentation (150 classes, mIoU)
# from the frozen EVA-ViT-G under a linear head. The paper has no dense probe
# and none of the reference projects has one; the protocol is ours:
# - backbone: the last block's stride-14 map after the final LayerNorm, the
#   feature ViSFT trains its heads on, without a cls token (as in ViSFT);
# - head: mmseg's FCNHead with no convs and no dropout, i.e. one 1x1 conv
#   (mmseg has no BN + 1x1 conv head), logits upsampled bilinearly;
# - stride 14: batches are padded to a multiple of 14 (512 crops -> 518, the
#   padding labelled 255 = ignored), and whole-image testing pads likewise and
#   crops the padding off the logits before resizing them to the image;
# - CLIP mean/std, EVA-CLIP's statistics (README, deliberate differences);
# - AdamW lr 1e-3, 1.5k warmup then linear decay, 40k iterations, 8 GPUs x 2.
# Checkpoints hold the head only (FrozenBackbone): tools/test.py reloads the
# ViT from `backbone_checkpoint`, so test with the --backbone you trained with.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    '../../_base_/eva_probe_inputs.py'
]
# The base EVA-ViT-G (LAVIS eva_vit_g.pth) or a ViSFT-merged one
# (tools/model_converters/merge_lora.py), in any layout EVAViT reads;
# tools/train.py and tools/test.py --backbone PATH set it.
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/eva_vit_g.pth}}'

data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],  # CLIP
    std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=14,
    test_cfg=dict(size_divisor=14))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='visft_mm.FrozenBackbone',
        module=dict(
            type='visft_mm.EVAViT',
            arch='eva-g',
            with_cls_token=False,
            out_type='featmap',
            init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint))),
    decode_head=dict(
        type='FCNHead',
        in_channels=1408,
        channels=1408,
        num_convs=0,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=150,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# mmseg's ADE20KDataset
train_dataloader = dict(batch_size=2)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=1500,
        end=40000)
]

# Checked before anything is built (tools/train.py, tools/test.py).
ade20k_how = (
    'download '
    'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip '
    'and unzip it into data/ade/, giving '
    'data/ade/ADEChallengeData2016/{images,annotations}/'
    '{training,validation}/')
required_paths = dict(
    model=[_base_.eva_g_probe_backbone],
    data=[
        dict(
            key=f'{loader}_dataloader.dataset.data_prefix.{folder}',
            root=f'{loader}_dataloader.dataset.data_root',
            what=what,
            how=ade20k_how,
            training_only=loader == 'train')
        for loader in ('train', 'val', 'test')
        for folder, what in (('img_path', 'ADE20K images'),
                             ('seg_map_path', 'ADE20K label maps'))
    ])
