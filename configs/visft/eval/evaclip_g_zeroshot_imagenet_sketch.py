# Zero-shot ImageNet-Sketch; 1000 classes in WordNet-id folders, with
# EVA01-CLIP-g/14. Same model and transform as evaclip_g_zeroshot_imagenet.py;
# backbone from $BACKBONE_CHECKPOINT (tools/test.py --backbone).
_base_ = './evaclip_g_zeroshot_imagenet.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='visft_mm.benchmarks.imagenet_variants.ImageNetVariant',
        variant='imagenet-sketch',
        data_root='data/imagenet-sketch',
        pipeline={{_base_.test_pipeline}}))

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.data_root',
        what='ImageNet-Sketch images',
        how='download ImageNet-Sketch '
        '(https://github.com/HaohanWang/ImageNet-Sketch) and '
        'move the class folders of its sketch/ to data/imagenet-sketch/'),
])
