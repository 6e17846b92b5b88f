# Zero-shot ImageNet-A with EVA01-CLIP-g/14: its 200 ImageNet classes only
# (labels and class names both follow timm's ImageNet-A subset).
# Backbone from $BACKBONE_CHECKPOINT.
_base_ = './evaclip_g_zeroshot_imagenet.py'

model = dict(class_names='imagenet-a')
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.datasets.ImageNetVariant',
        variant='imagenet-a',
        data_root='data/imagenet-a',
        pipeline={{_base_.test_pipeline}}))
