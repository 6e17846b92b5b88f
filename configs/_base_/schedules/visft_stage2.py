# Stage 2 (as the official stage-2 config): only LoRA trains, lr 1e-5, AdamW
# eps 1e-8 / weight decay 1e-4, 2000 linear warmup iterations then cosine over
# 100k iterations, gradient clipping 0.1, bf16 mixed precision. The official
# releases are snapshots at 5k-50k iterations of this 100k schedule.
max_iters = 100000
warmup_iters = 2000
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(
        type='AdamW', lr=1e-5, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
task_ratios = dict(caption=0.4, segmentation=0.3, detection=0.3)
train_cfg = dict(
    type='MultiTaskTrainLoop',
    max_iters=max_iters,
    task_ratios=task_ratios,
    val_interval=max_iters)
val_cfg = dict(type='MultiTaskValLoop')
test_cfg = dict(type='MultiTaskTestLoop')
