"""Two-process DDP on CPU (gloo, torchrun): every rank runs the same task at
every iteration and the ranks end with identical LoRA weights."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import free_port, stage2_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which('torchrun') is None
    and not (Path(sys.executable).parent / 'torchrun').exists(),
    reason='torchrun is not installed')
def test_two_process_ddp_stays_in_step(demo_coco, tmp_path):
    cfg = stage2_cfg(demo_coco, tmp_path / 'work', max_iters=4)
    cfg.custom_hooks.append(dict(type='RecordTasksAndLoRA'))
    cfg.custom_imports = dict(
        imports=['ddp_probe'], allow_failed_imports=False)
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=None)
    cfg.train_cfg.task_ratios = dict(detection=0.5, segmentation=0.5)
    cfg.pop('val_cfg'), cfg.pop('val_dataloader'), cfg.pop('val_evaluator')
    cfg_path = tmp_path / 'ddp_cfg.py'
    cfg.dump(str(cfg_path))

    torchrun = Path(sys.executable).parent / 'torchrun'
    env = dict(
        os.environ,
        PYTHONPATH=f'{ROOT / "tests"}{os.pathsep}{ROOT}',
        OMP_NUM_THREADS='1')
    result = subprocess.run([
        str(torchrun), '--nproc_per_node=2', f'--master_port={free_port()}',
        str(ROOT / 'tools/train.py'),
        str(cfg_path), '--launcher', 'pytorch'
    ],
                            cwd=ROOT,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [torch.load(tmp_path / 'work' / f'rank{r}.pt') for r in (0, 1)]
    assert len(ranks[0]['tasks']) == 4
    assert ranks[0]['tasks'] == ranks[1]['tasks']
    assert set(ranks[0]['tasks']) == {'detection', 'segmentation'}
    for key, value in ranks[0]['lora'].items():
        assert torch.equal(ranks[1]['lora'][key], value), key
    assert any(v.abs().sum() > 0 for k, v in ranks[0]['lora'].items()
               if k.endswith('lora_B'))
