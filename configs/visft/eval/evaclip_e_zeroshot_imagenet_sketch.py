# As evaclip_g_zeroshot_imagenet_sketch.py, with EVA02-CLIP-bigE-14-plus:
# EVA-ViT-E (64 post-norm blocks, 1792 wide) and its 1280-wide text tower. The
# backbone under test, from $BACKBONE_CHECKPOINT, is then an EVA-ViT-E.
_base_ = [
    './evaclip_g_zeroshot_imagenet_sketch.py',
    '../../_base_/models/evaclip_e.py'
]

clip_checkpoint = _base_.evaclip_e_model.clip_checkpoint
model = _base_.evaclip_e_model
required_paths = dict(model=_base_.evaclip_e_required_models)
