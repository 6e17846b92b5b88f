# Stage 1 (as the official stage-1 configs): AdamW eps 1e-8, weight decay 1e-4,
# 2000 linear warmup iterations then cosine to 0, gradient clipping at L2 0.1,
# mixed precision (bf16 here; the official runs fp16 on V100). No in-training
# evaluation, as in the official configs: the model is evaluated at the end.
max_iters = 150000
warmup_iters = 2000
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(
        type='AdamW', lr=5e-5, betas=(0.9, 0.999), eps=1e-8,
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
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# validation in a forked random state, so that it never changes training
val_cfg = dict(type='ForkedRNGValLoop')
test_cfg = dict(type='TestLoop')
