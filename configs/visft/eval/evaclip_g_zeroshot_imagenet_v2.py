# Zero-shot ImageNet-V2 (matched frequency) with EVA01-CLIP-g/14; 1000 classes
# in folders named by class index. Backbone from $BACKBONE_CHECKPOINT.
_base_ = './evaclip_g_zeroshot_imagenet.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.datasets.ImageNetVariant',
        variant='imagenet-v2',
        data_root='data/imagenet-v2',
        pipeline={{_base_.test_pipeline}}))
