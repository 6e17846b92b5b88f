"""The training benchmark runs the demo stage-2 config with a tiny ViT on CPU:
one line per task and LoRA changed by the steps (timings are never
asserted)."""
import re

from tiny import run_script


def test_benchmark_train_runs_every_task_and_trains_lora():
    result = run_script('tools/analysis_tools/benchmark_train.py',
                        'configs/visft/demo/demo_stage2.py', '--arch', 'tiny',
                        '--iters', '1', '--warmup', '0', '--cfg-options',
                        'train_dataloader.caption.batch_size=2',
                        'train_dataloader.segmentation.batch_size=1',
                        'train_dataloader.detection.batch_size=1')
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    for task in ('caption', 'segmentation', 'detection'):
        line = next((line for line in lines if line.startswith(f'{task}: ')),
                    None)
        assert line, result.stdout
        match = re.fullmatch(
            rf'{task}: (\d+\.\d+) s/iter, peak memory n/a \(CPU\), '
            r'(\S+) TFLOP/s \(executed FLOPs, with recomputation\), MFU n/a',
            line)
        assert match and float(match.group(1)) > 0 and float(
            match.group(2)) > 0, line
    # the tiny ViT's 2 blocks each hold LoRA A and B; every step trains them
    assert lines[-1] == 'trainable tensors changed: 4 of 4'
