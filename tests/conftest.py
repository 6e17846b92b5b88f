"""Shared fixtures: generated demo COCO datasets (one in the layout the paper
configs read) and an srun stand-in for the multi-process tests. Plain helpers
live in tiny.py and paper_configs.py."""
import logging

import pytest
from mmengine.logging import MMLogger
from paper_configs import write_paper_coco
from tiny import IMG

from visft_mm.demo.demo_coco import generate_demo_coco


@pytest.fixture(scope='session')
def demo_coco(tmp_path_factory):
    """A small demo dataset (8 train, 4 val images), generated once per
    session."""
    root = tmp_path_factory.mktemp('demo_coco')
    generate_demo_coco(str(root), num_train=8, num_val=4, img_size=IMG, seed=0)
    return root


@pytest.fixture(scope='session')
def small_demo_coco(tmp_path_factory):
    """6 train and 2 val demo images, for the caption tests that pick their
    items by index."""
    root = tmp_path_factory.mktemp('small_demo_coco')
    generate_demo_coco(str(root), num_train=6, num_val=2, img_size=IMG, seed=0)
    return root


@pytest.fixture(scope='session')
def paper_coco(tmp_path_factory):
    """The demo data where the paper configs read COCO (data/coco/)."""
    return write_paper_coco(tmp_path_factory)


@pytest.fixture
def log_records():
    """Records that ``print_log(..., logger='current')`` emits."""
    records = []

    class Collect(logging.Handler):

        def emit(self, record):
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# srun's stand-in: records its arguments in $SRUN_LOG, then runs the command as
# --ntasks local tasks with the environment srun gives each task.
FAKE_SRUN = (r'''#!/usr/bin/env bash
printf '%s\n' "$@" > "$SRUN_LOG"
while [[ $1 == -* ]]; do
    case $1 in
        --ntasks=*) NTASKS=${1#*=} ;;
        -p) shift ;;
    esac
    shift
done
pids=()
for ((rank = 0; rank < NTASKS; rank++)); do
    SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NTASKS=$NTASKS '''
             r'''SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
''')


@pytest.fixture
def fake_srun(tmp_path):
    """A folder holding an executable ``srun`` stand-in, to put first on
    PATH."""
    bin_dir = tmp_path / 'fake_bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(0o755)
    return bin_dir
