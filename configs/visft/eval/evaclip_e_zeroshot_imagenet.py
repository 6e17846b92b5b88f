# As evaclip_g_zeroshot_imagenet.py, with EVA02-CLIP-bigE-14-plus: EVA-ViT-E
# (64 post-norm blocks, 1792 wide) and its 1280-wide text tower. The vision
# blocks come from $BACKBONE_CHECKPOINT (a base or ViSFT-merged EVA-ViT-E).
_base_ = './evaclip_g_zeroshot_imagenet.py'

clip_checkpoint = 'checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt'
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt}}'
model = dict(
    clip_checkpoint=clip_checkpoint,
    backbone_checkpoint=backbone_checkpoint,
    vision_arch='eva-e',
    open_clip_model='EVA02-E-14-plus')
