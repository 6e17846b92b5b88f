# EVA-ViT-G (EVA01-CLIP-g/14 visual: 40 blocks, 1408 wide, pre-norm) as ViSFT
# trains it: no cls token in the blocks. `checkpoint` may be LAVIS's
# eva_vit_g.pth or any layout tools/model_converters/eva2visft.py accepts.
eva_backbone = dict(
    type='EVAViT',
    arch='eva-g',
    with_cls_token=False,
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/eva_vit_g.pth'))
# What to do when the weights are missing, for the configs' `required_paths`
# (each adds the key of its backbone's checkpoint). The eva_4b configs inherit
# it from the eva_1b ones, with their EVA-ViT-E file.
eva_weights_input = dict(
    what='EVA-ViT weights',
    how='download the EVA-CLIP checkpoint from '
    'https://huggingface.co/QuanSun/EVA-CLIP into checkpoints/. '
    'EVA-ViT-E: EVA02_CLIP_E_psz14_plus_s9B.pt loads as it is; '
    'EVA-ViT-G: convert EVA01_CLIP_g_14_psz14_s11B.pt, '
    '`python tools/model_converters/eva2visft.py '
    'checkpoints/EVA01_CLIP_g_14_psz14_s11B.pt checkpoints/eva_vit_g.pth`')
# where the ViT's weights sit in a stage-1 model (FrozenBackbone) and in a
# stage-2 one (LoRA around FrozenBackbone)
stage1_backbone_input = dict(
    eva_weights_input, key='model.backbone.module.init_cfg.checkpoint')
stage2_backbone_input = dict(
    eva_weights_input, key='model.backbone.module.module.init_cfg.checkpoint')
