# Zero-shot ImageNet-A: its 200 ImageNet classes only (labels and class
# names both follow timm's ImageNet-A subset), with EVA01-CLIP-g/14.
# Same model and transform as evaclip_g_zeroshot_imagenet.py; backbone from
# $BACKBONE_CHECKPOINT (tools/test.py --backbone).
_base_ = './evaclip_g_zeroshot_imagenet.py'

model = dict(class_names='imagenet-a')
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.benchmarks.imagenet_variants.ImageNetVariant',
        variant='imagenet-a',
        data_root='data/imagenet-a',
        pipeline={{_base_.test_pipeline}}))

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.data_root',
        what='ImageNet-A images',
        how='download '
        'https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar '
        'and extract it into data/'),
])
