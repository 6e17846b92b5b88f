# The paper's detection head (visft_detr.py) sized for the CPU demo: small ViT
# (192 wide), 4 demo classes, fewer layers. Only what differs is overridden;
# mmengine merges these keys into the inherited `detection_model`, and a
# config on top can override them again the same way (e.g.
# `neck.in_channels`).
# DETR converges slowly: on frozen random tiny-ViT features it was still at
# val bbox mAP 0.00 after 600 iterations of batch 8 (see visft_dino_demo.py,
# the recommended demo detection head, for the numbers). Use it to run the
# paper's head at demo scale, with a longer schedule.
_base_ = ['./visft_detr.py']

detection_model = dict(
    neck=dict(in_channels=[192]),
    encoder=dict(num_layers=3),
    decoder=dict(num_layers=3),
    bbox_head=dict(num_classes=4))
