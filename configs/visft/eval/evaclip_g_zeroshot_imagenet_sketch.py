# Zero-shot ImageNet-Sketch with EVA01-CLIP-g/14; 1000 classes in wnid folders.
# Backbone from $BACKBONE_CHECKPOINT.
_base_ = './evaclip_g_zeroshot_imagenet.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.datasets.ImageNetVariant',
        variant='imagenet-sketch',
        data_root='data/imagenet-sketch',
        pipeline={{_base_.test_pipeline}}))
