# Zero-shot image-text retrieval on Flickr30k (Karpathy 1k test) with
# EVA01-CLIP-g/14: i2t and t2i Recall@1/5/10. Same model and transform as
# evaclip_g_retrieval_coco.py; backbone from $BACKBONE_CHECKPOINT.
_base_ = './evaclip_g_retrieval_coco.py'

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='Flickr30kRetrieval',
        data_root='data/flickr30k',
        ann_file='annotations/dataset_flickr30k.json',
        data_prefix='images',
        split='test',
        pipeline={{_base_.test_pipeline}},
        test_mode=True))

required_paths = dict(data=[
    dict(
        key='test_dataloader.dataset.ann_file',
        root='test_dataloader.dataset.data_root',
        what="Karpathy's dataset_flickr30k.json",
        how='take it from '
        'https://cs.stanford.edu/people/karpathy/deepimagesent/'
        'caption_datasets.zip and put it in data/flickr30k/annotations/'),
    dict(
        key='test_dataloader.dataset.data_prefix',
        root='test_dataloader.dataset.data_root',
        what='Flickr30k images',
        how='request them at https://shannon.cs.illinois.edu/DenotationGraph/ '
        'and put them in data/flickr30k/images/'),
])
