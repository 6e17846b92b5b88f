# Runtime of visft_mm runs: mmdet's runtime in the visft_mm scope,
# iteration-based logging and checkpoints (validation scalars at their
# training iteration; multi-task lines name their task and show only its
# losses), the random state saved for exact resume, the LoRA settings
# (alpha, slices) saved for merge_lora.py, and pictures (tools/test.py
# --show-dir) of each task with its own class names, captions written in.
_base_ = 'mmdet::_base_/default_runtime.py'

default_scope = 'visft_mm'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=1000,
        max_keep_ckpts=3),
    visualization=dict(type='visft_mm.MultiTaskVisualizationHook'))
visualizer = dict(
    type='visft_mm.ViSFTVisualizer',
    vis_backends=[dict(type='LocalVisBackend')],
    name='visualizer')
custom_hooks = [dict(type='RandomStateHook'), dict(type='LoRAMetaHook')]
log_processor = dict(
    type='visft_mm.MultiTaskLogProcessor', window_size=50, by_epoch=False)
