# Entries of the probes' `required_paths` (configs/visft/eval/eva_*_probe_*),
# checked before anything is built: the EVA-ViT under test, base or
# ViSFT-merged, and the k-shot split. Named eva_*/fewshot_probe_* because a
# config inherits this beside mmseg's or mmpretrain's bases.
eva_g_probe_backbone = dict(
    key='model.backbone.module.init_cfg.checkpoint',
    what='EVA-ViT-G backbone to probe',
    how='download LAVIS eva_vit_g.pth (https://storage.googleapis.com/'
    'sfr-vision-language-research/LAVIS/models/BLIP2/eva_vit_g.pth) '
    'into checkpoints/, or merge a ViSFT LoRA file into it with '
    'tools/model_converters/merge_lora.py and pass it as --backbone')
eva_e_probe_backbone = dict(
    key='model.backbone.module.init_cfg.checkpoint',
    what='EVA-ViT-E backbone to probe',
    how='download EVA02_CLIP_E_psz14_plus_s9B.pt from '
    'https://huggingface.co/QuanSun/EVA-CLIP into checkpoints/, or merge a '
    'ViSFT LoRA file into it with tools/model_converters/merge_lora.py and '
    'pass it as --backbone')
fewshot_probe_split = dict(
    key='train_dataloader.dataset.ann_file',
    root='train_dataloader.dataset.data_root',
    what='k-shot ImageNet-1k split',
    how='write it with `python tools/misc/make_fewshot_split.py '
    'data/imagenet --shots K --seed S`, K and S as in its file name',
    training_only=True)
