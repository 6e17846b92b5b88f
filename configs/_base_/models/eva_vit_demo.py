# The demo's small EVA-ViT (192 wide, 4 blocks, pre-norm, 8x8 tokens at
# 112 px). No pretrained weights can be downloaded here: `make demo` first
# pre-trains it CLIP-style on the demo captions
# (tools/misc/pretrain_demo_backbone.py) and loads that checkpoint, so stage 1
# starts from a model that already sees.
eva_backbone = dict(
    type='EVAViT',
    arch=dict(
        embed_dims=192, num_layers=4, num_heads=4, feedforward_channels=384),
    pretrain_img_size=112,
    with_cls_token=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='work_dirs/visft_demo/backbone_pretrained.pth'))
# for the demo configs' `required_paths` (each adds the key of its backbone's
# checkpoint)
eva_weights_input = dict(
    what='demo backbone',
    how='`make demo` makes it, or '
    '`python tools/misc/pretrain_demo_backbone.py data/demo_coco {path}`')
# where the ViT's weights sit in a stage-1 model (FrozenBackbone) and in a
# stage-2 one (LoRA around FrozenBackbone)
stage1_backbone_input = dict(
    eva_weights_input, key='model.backbone.module.init_cfg.checkpoint')
stage2_backbone_input = dict(
    eva_weights_input, key='model.backbone.module.module.init_cfg.checkpoint')
