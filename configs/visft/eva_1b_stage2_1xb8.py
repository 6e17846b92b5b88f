# ViSFT stage 2 for EVA-ViT-G on one GPU, step for step the 8-GPU run of
# eva_1b_stage2.py: every optimizer step accumulates 8 micro-batches of the
# per-GPU batch (8 captions, or 1 segmentation or 1 detection image), the
# 8-GPU global batch. MultiTaskTrainLoop draws the task once per optimizer
# step, for all 8 micro-batches, and counts iterations in optimizer steps, so
# max_iters (100k), the warmup + cosine schedule and the checkpoint (500), log
# and validation intervals are the 8-GPU run's.
# The caption loss is the 8-GPU run's exactly (a mean over each 8-caption
# batch in both). DETR's box losses and Mask2Former's mask losses divide by
# the number of boxes or masks: over 8 GPUs by the count averaged over the
# ranks (mmdet's reduce_mean), so every box or mask of a step weighs the same;
# here by each micro-batch's own count, so every image does.
_base_ = './eva_1b_stage2.py'
optim_wrapper = dict(accumulative_counts=8)
