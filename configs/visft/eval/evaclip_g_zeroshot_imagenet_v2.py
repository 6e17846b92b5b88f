# Zero-shot ImageNet-V2 (matched frequency); 1000 classes in folders named by
# class index, with EVA01-CLIP-g/14.
# Same model and transform as evaclip_g_zeroshot_imagenet.py; backbone from
# $BACKBONE_CHECKPOINT (tools/test.py --backbone).
_base_ = './evaclip_g_zeroshot_imagenet.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.benchmarks.imagenet_variants.ImageNetVariant',
        variant='imagenet-v2',
        data_root='data/imagenet-v2',
        pipeline={{_base_.test_pipeline}}))

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.data_root',
        what='ImageNet-V2 matched-frequency images',
        how='download imagenetv2-matched-frequency.tar.gz from '
        'https://huggingface.co/datasets/vaishaal/ImageNetV2 '
        'and move the class folders 0..999 of '
        'imagenetv2-matched-frequency-format-val to data/imagenet-v2/'),
])
