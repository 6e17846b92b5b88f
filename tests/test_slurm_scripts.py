"""tools/slurm_{train,test}.sh: valid bash, the srun job they ask for (GPUS
tasks, GPUS_PER_NODE a node, each running the tool with --launcher=slurm), and
srun tasks joining one process group on CPU. tests/test_grad_accumulation.py
trains through slurm_train.sh."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import free_port

ROOT = Path(__file__).resolve().parents[1]
# `python` stand-in: each srun task writes its rank and arguments.
FAKE_PYTHON = ('#!/usr/bin/env bash\n'
               'echo "$SLURM_PROCID/$SLURM_NTASKS $*" >> "$PYTHON_LOG"\n')


@pytest.mark.parametrize('script', [
    'slurm_train.sh', 'slurm_test.sh', 'misc/srun_tool.sh', 'dist_train.sh',
    'dist_test.sh'
])
def test_launch_script_is_valid_bash(script):
    result = subprocess.run(
        ['bash', '-n', str(ROOT / 'tools' / script)],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('script,fourth,tool_args', [
    ('slurm_train.sh', 'work_dirs/run', ['cfg.py', '--work-dir=work_dirs/run'
                                         ]),
    ('slurm_test.sh', 'ckpt.pth', ['cfg.py', 'ckpt.pth']),
])
def test_slurm_script_starts_one_task_per_gpu(script, fourth, tool_args,
                                              fake_srun, tmp_path):
    python = fake_srun / 'python'
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f'{fake_srun}{os.pathsep}{os.environ["PATH"]}',
        SRUN_LOG=str(tmp_path / 'srun.log'),
        PYTHON_LOG=str(tmp_path / 'python.log'),
        GPUS='4',
        GPUS_PER_NODE='2',
        SRUN_ARGS='--time=1:00 --quiet')
    result = subprocess.run([
        'bash',
        str(ROOT / 'tools' / script), 'gpu', 'visft', 'cfg.py', fourth,
        '--cfg-options', 'a=1'
    ],
                            env=env,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr

    tool = ROOT / 'tools' / script.replace('slurm_', '').replace('.sh', '.py')
    command = [
        '-u',
        str(tool), *tool_args, '--launcher=slurm', '--cfg-options', 'a=1'
    ]
    assert (tmp_path / 'srun.log').read_text().splitlines() == [
        '-p', 'gpu', '--job-name=visft', '--gres=gpu:2', '--ntasks=4',
        '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        '--time=1:00', '--quiet', 'python', *command
    ]
    tasks = sorted((tmp_path / 'python.log').read_text().splitlines())
    assert tasks == [f'{rank}/4 {" ".join(command)}' for rank in range(4)]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='with GPUs, mmengine starts slurm jobs')
def test_srun_tasks_join_one_gloo_group_without_gpus(fake_srun, tmp_path):
    code = ('import sys, torch, torch.distributed as dist\n'
            'from visft_mm.utils.dist import init_cpu_process_group\n'
            "init_cpu_process_group('slurm')\n"
            'total = torch.tensor([dist.get_rank() + 1])\n'
            'dist.all_reduce(total)\n'
            '# one write per line: the two tasks share the pipe\n'
            "sys.stdout.write(f'{dist.get_rank()} {dist.get_world_size()} "
            "{total.item()}\\n')\n"
            '# leave the group together: a gloo group torn down at exit '
            'can abort\n'
            'dist.barrier()\n'
            'dist.destroy_process_group()')
    env = dict(
        os.environ,
        PATH=f'{fake_srun}{os.pathsep}{os.environ["PATH"]}',
        PYTHONPATH=str(ROOT),
        SRUN_LOG=str(tmp_path / 'srun.log'),
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()))
    result = subprocess.run(['srun', '--ntasks=2', sys.executable, '-c', code],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ['0 2 3', '1 2 3']
