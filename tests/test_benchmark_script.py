"""The backbone benchmark runs end to end and prints its three ratio lines
(timings themselves are never asserted)."""
import re

from tiny import run_script


def test_benchmark_prints_ratios():
    result = run_script('tools/analysis_tools/benchmark_backbone.py', '--arch',
                        'tiny', '--img-size', '56', '--rank', '4', '--iters',
                        '1', '--warmup', '0')
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-3:]
    names = [
        'evavit_vs_timm_fwd_bwd_ratio', 'lora_vs_plain_forward_ratio',
        'lora_vs_full_finetune_step_ratio'
    ]
    for line, name in zip(last, names):
        match = re.fullmatch(rf'{name}: (\d+\.\d+)', line)
        assert match and float(match.group(1)) > 0, line
