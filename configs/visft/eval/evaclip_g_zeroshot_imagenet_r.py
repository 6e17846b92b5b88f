# Zero-shot ImageNet-R: its 200 ImageNet classes only (labels and class
# names both follow timm's ImageNet-R subset), with EVA01-CLIP-g/14.
# Same model and transform as evaclip_g_zeroshot_imagenet.py; backbone from
# $BACKBONE_CHECKPOINT (tools/test.py --backbone).
_base_ = './evaclip_g_zeroshot_imagenet.py'

model = dict(class_names='imagenet-r')
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.benchmarks.imagenet_variants.ImageNetVariant',
        variant='imagenet-r',
        data_root='data/imagenet-r',
        pipeline={{_base_.test_pipeline}}))

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.data_root',
        what='ImageNet-R images',
        how='download '
        'https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar '
        'and extract it into data/'),
])
