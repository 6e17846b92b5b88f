# ViSFT stage 2 for EVA-ViT-E on one GPU: eva_4b_stage2.py with the 8-GPU
# global batch accumulated over 8 micro-batches per optimizer step, as
# eva_1b_stage2_1xb8.py explains (the same schedule in optimizer steps, and
# box/mask losses normalised per micro-batch instead of across the 8 GPUs).
_base_ = './eva_4b_stage2.py'
optim_wrapper = dict(accumulative_counts=8)
