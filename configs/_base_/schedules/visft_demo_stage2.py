# What the CPU demo changes in the stage-2 schedule: minutes instead of days,
# hence fewer iterations, higher learning rates, short warmups and full
# precision (no AMP on CPU). Everything else comes from the stage schedules.
_base_ = ['./visft_stage2.py', '../default_runtime.py']

optim_wrapper = dict(
    type='OptimWrapper',
    _delete_=True,
    optimizer=dict(type='AdamW', lr=5e-4, eps=1e-8, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
default_hooks = dict(logger=dict(interval=20))
# A fixed seed, so that every run of the demo prints the same table.
randomness = dict(seed=0)
