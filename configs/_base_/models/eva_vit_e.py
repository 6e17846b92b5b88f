# EVA-ViT-E (EVA02-CLIP-bigE-14-plus visual: 64 blocks, 1792 wide, post-norm)
# as ViSFT trains it: no cls token in the blocks. The full EVA-CLIP checkpoint
# loads directly (its text tower and projection are dropped and reported).
eva_backbone = dict(
    type='EVAViT',
    arch='eva-e',
    with_cls_token=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt'))
