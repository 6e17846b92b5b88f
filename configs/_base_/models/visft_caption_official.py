# ViSFT caption head in the layout of the released stage-1 heads (Hugging
# Face TencentARC/ViSFT, eva_{g,e}_caption_heads.ckpt; key mapping in
# visft_mm/checkpoints/official_heads.py). `caption_model_to_official` holds
# the changes that turn `caption_model` of visft_caption.py into it; a config
# that has the `caption` task merges them in: model = dict(tasks=dict(
#     caption=_base_.caption_model_to_official)).
# - inputs normalised with ImageNet mean/std, as the official heads were
#   trained (reference §4.6);
# - the word map must be the official one: 9490 entries in the official id
#   order, made from Karpathy's dataset_coco.json by
#   tools/misc/build_caption_vocab.py --official (or the official
#   WORDMAP_coco_5_cap_per_img_5_min_word_freq.json itself), at the vocab_file
#   path caption_model already names.
caption_model_to_official = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],  # ImageNet
        std=[58.395, 57.12, 57.375]),
    head=dict(vocab_size=9490))
# The `required_paths` entry of its word map, in place of the dataset's
# caption_word_map_input: required_paths = dict(
#     word_map=[_base_.official_caption_word_map_input]).
official_caption_word_map_input = dict(
    key='model.tasks.caption.head.vocab_file',
    what='official caption word map',
    how='build it from the Karpathy split: '
    '`python tools/misc/build_caption_vocab.py --official '
    'data/coco/annotations/dataset_coco.json {path}`')
