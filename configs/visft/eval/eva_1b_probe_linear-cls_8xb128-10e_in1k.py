# Out-of-domain linear probe: ImageNet-1k classification (top-1/top-5) from
# the frozen EVA-ViT-G. The paper's classification protocol is not known
# (the official code released no out-of-domain evaluation); this one is ours:
# - feature: the mean of the patch tokens after the final LayerNorm. ViSFT
#   runs and fine-tunes the ViT without a cls token, and a ViSFT-merged
#   checkpoint may not contain one, so the pooled patch tokens are the
#   feature both the base and the ViSFT backbone provide;
# - head: mmpretrain's LinearClsHead;
# - images: bicubic RandomResizedCrop 224 + flip for training, bicubic short
#   side 256 + centre crop 224 for testing (mmpretrain's pil_bicubic
#   ImageNet), CLIP mean/std;
# - AdamW lr 1e-3, 1 warm-up epoch then cosine, 10 epochs, 8 GPUs x 128.
# Checkpoints hold the head only (FrozenBackbone): tools/test.py reloads the
# ViT from `backbone_checkpoint`, so test with the --backbone you trained with.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_bicubic.py',
    'mmpretrain::_base_/default_runtime.py', '../../_base_/eva_probe_inputs.py'
]
# The base EVA-ViT-G (LAVIS eva_vit_g.pth) or a ViSFT-merged one
# (tools/model_converters/merge_lora.py), in any layout EVAViT reads;
# tools/train.py and tools/test.py --backbone PATH set it.
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/eva_vit_g.pth}}'

data_preprocessor = dict(
    num_classes=1000,
    mean=[v * 255 for v in (0.48145466, 0.4578275, 0.40821073)],  # CLIP
    std=[v * 255 for v in (0.26862954, 0.26130258, 0.27577711)],
    to_rgb=True)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='visft_mm.FrozenBackbone',
        module=dict(
            type='visft_mm.EVAViT',
            arch='eva-g',
            with_cls_token=False,
            out_type='featmap',
            init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint))),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1408,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

# mmpretrain's ImageNet
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=1,
        end=10,
        convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))

# Checked before anything is built (tools/train.py, tools/test.py).
imagenet_how = ('get ImageNet-1k from https://image-net.org/download.php '
                'and arrange it as data/imagenet/{train,val}/<class>/*.JPEG, '
                'or as data/imagenet/{train,val}/*.JPEG with '
                'meta/{train,val}.txt lines "<file> <label>"')
required_paths = dict(
    model=[_base_.eva_g_probe_backbone],
    data=[
        dict(
            key=f'{loader}_dataloader.dataset.split',
            root=f'{loader}_dataloader.dataset.data_root',
            what='ImageNet-1k images',
            how=imagenet_how,
            training_only=loader == 'train')
        for loader in ('train', 'val', 'test')
    ])
