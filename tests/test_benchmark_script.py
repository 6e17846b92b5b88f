"""The backbone benchmark runs end to end and prints its three ratio lines
(timings themselves are never asserted)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_prints_ratios():
    result = subprocess.run([
        sys.executable, 'tools/analysis_tools/benchmark_backbone.py', '--arch',
        'tiny', '--img-size', '56', '--rank', '4', '--iters', '1', '--warmup',
        '0'
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-3:]
    names = [
        'evavit_vs_timm_fwd_bwd_ratio', 'lora_vs_plain_forward_ratio',
        'lora_vs_full_finetune_step_ratio'
    ]
    for line, name in zip(last, names):
        match = re.fullmatch(rf'{name}: (\d+\.\d+)', line)
        assert match and float(match.group(1)) > 0, line
