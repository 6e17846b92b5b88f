# Zero-shot ImageNet-R with EVA01-CLIP-g/14: its 200 ImageNet classes only
# (labels and class names both follow timm's ImageNet-R subset).
# Backbone from $BACKBONE_CHECKPOINT.
_base_ = './evaclip_g_zeroshot_imagenet.py'

model = dict(class_names='imagenet-r')
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.datasets.ImageNetVariant',
        variant='imagenet-r',
        data_root='data/imagenet-r',
        pipeline={{_base_.test_pipeline}}))
