# Out-of-domain linear probe on ImageNet-1k (top-1/top-5) for the frozen
# EVA-ViT-E: the EVA-ViT-G probe with the 4.4B backbone (64 blocks, 1792 wide).
_base_ = ['./eva_1b_probe_linear-cls_8xb128-10e_in1k.py']
# The base EVA02-CLIP-bigE-14-plus checkpoint or a ViSFT-merged one
# (tools/model_converters/merge_lora.py), in any layout EVAViT reads;
# tools/train.py and tools/test.py --backbone PATH set it. The line stays long:
# mmengine substitutes an environment variable only in an unbroken string.
backbone_checkpoint = '{{$BACKBONE_CHECKPOINT:checkpoints/EVA02_CLIP_E_psz14_plus_s9B.pt}}'  # noqa: E501

model = dict(
    backbone=dict(
        module=dict(
            arch='eva-e',
            init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint))),
    head=dict(in_channels=1792))
required_paths = dict(model=[_base_.eva_e_probe_backbone])
