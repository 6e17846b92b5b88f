# What the EVA02-CLIP-bigE-14-plus benchmarks (configs/visft/eval/evaclip_e_*)
# change in their EVA01-CLIP-g/14 twins: the CLIP file, an EVA-ViT-E image
# tower (64 post-norm blocks, 1792 wide) and the 1280-wide text tower. Named
# evaclip_e_* because a config inherits it beside its g twin, and sibling
# bases may not define the same keys.
evaclip_e_model = dict(
    clip_checkpoint='checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt',
    vision_arch='eva-e',
    open_clip_model='EVA02-E-14-plus')
evaclip_e_required_models = [
    dict(
        key='model.clip_checkpoint',
        what='EVA02-CLIP-bigE-14-plus checkpoint (original layout)',
        how='download EVA02_CLIP_E_psz14_plus_s9B.pt from '
        'https://huggingface.co/QuanSun/EVA-CLIP into checkpoints/'),
    dict(
        key='model.backbone_checkpoint',
        what='EVA-ViT-E backbone under test',
        how='write a base one with tools/model_converters/eva2visft.py '
        'or a ViSFT one with tools/model_converters/merge_lora.py, '
        'or leave $BACKBONE_CHECKPOINT '
        "unset to test the CLIP file's own"),
]
