"""Every benchmark under configs/visft/eval/ takes the backbone under test from
$BACKBONE_CHECKPOINT (tools/test.py --backbone), and uses it."""
from pathlib import Path

import pytest

from visft_mm.utils.cli import read_config

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / 'configs/visft/eval').glob('*.py'))
SENTINEL = 'sentinel/visft_backbone.pth'


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 9


@pytest.mark.parametrize('config', BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_reads_the_backbone_variable(config):
    default = read_config(str(config))
    cfg = read_config(str(config), backbone=SENTINEL)
    assert cfg.backbone_checkpoint == SENTINEL != default.backbone_checkpoint
    hooks = [hook['type'] for hook in cfg.get('custom_hooks', [])]
    if 'visft_mm.BackboneCheckpointHook' in hooks:
        return  # the hook loads cfg.backbone_checkpoint when the test starts
    assert SENTINEL in str(
        cfg.model), f'{config.name} reads the variable but never uses it'
