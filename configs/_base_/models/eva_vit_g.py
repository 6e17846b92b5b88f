# EVA-ViT-G (EVA01-CLIP-g/14 visual: 40 blocks, 1408 wide, pre-norm) as ViSFT
# trains it: no cls token in the blocks. `checkpoint` may be LAVIS's
# eva_vit_g.pth or any layout tools/model_converters/eva2visft.py accepts.
eva_backbone = dict(
    type='EVAViT',
    arch='eva-g',
    with_cls_token=False,
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/eva_vit_g.pth'))
