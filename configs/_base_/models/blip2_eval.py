# What the BLIP-2 evaluation configs (configs/visft/eval/blip2_*) share with
# each other and not with mmpretrain's BLIP-2 configs: the swap of the vision
# backbone for the file named by the top-level `backbone_checkpoint` (None:
# BLIP-2's own), and the model files that tools/test.py checks before building
# anything. Nothing is downloaded.
custom_hooks = [dict(type='visft_mm.BackboneCheckpointHook')]

required_paths = dict(model=[
    dict(
        key='load_from',
        what='BLIP-2 OPT-2.7b checkpoint (mmpretrain layout)',
        how='download '
        'https://download.openmmlab.com/mmclassification/v1/blip2/'
        'blip2-opt2.7b_3rdparty_pretrain_20230505-b51db4e1.pth '
        'into checkpoints/ (or give tools/test.py another CHECKPOINT)'),
    dict(
        key='model.text_backbone.name_or_path',
        what='OPT-2.7b folder (weights, tokenizer)',
        how='`huggingface-cli download facebook/opt-2.7b '
        '--local-dir checkpoints/opt-2.7b`'),
    dict(
        key='model.tokenizer.name_or_path',
        what='OPT-2.7b tokenizer folder',
        how='`huggingface-cli download facebook/opt-2.7b '
        '--local-dir checkpoints/opt-2.7b`'),
    dict(
        key='model.multimodal_backbone.model_style',
        what='bert-base-uncased config folder (shape of the Q-Former)',
        how='`huggingface-cli download bert-base-uncased config.json '
        '--local-dir checkpoints/bert-base-uncased`'),
    dict(
        key='backbone_checkpoint',
        what='ViSFT vision backbone (mmpretrain BEiTViT layout)',
        how='convert the LoRA-merged ViSFT EVA-ViT-G with '
        'tools/model_converters/visft2mmpretrain.py, '
        'or set backbone_checkpoint=None '
        "to test BLIP-2's own vision backbone"),
])
