# As evaclip_g_zeroshot_imagenet_r.py, with EVA02-CLIP-bigE-14-plus: EVA-ViT-E
# (64 post-norm blocks, 1792 wide) and its 1280-wide text tower. The backbone
# under test, from $BACKBONE_CHECKPOINT, is then an EVA-ViT-E.
_base_ = './evaclip_g_zeroshot_imagenet_r.py'

clip_checkpoint = 'checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt'
model = dict(
    clip_checkpoint=clip_checkpoint, vision_arch='eva-e', open_clip_model='EVA02-E-14-plus')

required_paths = dict(model=[
    dict(key='model.clip_checkpoint', what='EVA02-CLIP-bigE-14-plus checkpoint (original layout)',
         how='download EVA02_CLIP_E_psz14_plus_s9B.pt from '
             'https://huggingface.co/QuanSun/EVA-CLIP into checkpoints/'),
    dict(key='model.backbone_checkpoint', what='EVA-ViT-E backbone under test',
         how='write a base one with tools/model_converters/eva2visft.py or a ViSFT one '
             'with tools/model_converters/merge_lora.py, or leave $BACKBONE_CHECKPOINT '
             "unset to test the CLIP file's own"),
])
