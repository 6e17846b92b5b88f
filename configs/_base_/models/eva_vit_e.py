# EVA-ViT-E (EVA02-CLIP-bigE-14-plus visual: 64 blocks, 1792 wide, post-norm)
# in place of EVA-ViT-G: what each eva_4b_* config changes in its eva_1b_*
# base. The full EVA-CLIP checkpoint loads directly (its text tower and
# projection are dropped and reported).
eva_e_vit = dict(
    arch='eva-e',
    init_cfg=dict(checkpoint='checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt'))
# the task heads on 1792 channels
eva_e_task_widths = dict(
    caption=dict(head=dict(in_channels=1792)),
    segmentation=dict(panoptic_head=dict(in_channels=[1792])),
    detection=dict(neck=dict(in_channels=[1792])))
