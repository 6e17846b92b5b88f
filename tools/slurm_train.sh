#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
# One srun task per GPU, GPUS_PER_NODE of them on each node.
exec "$(dirname "$0")/misc/srun_tool.sh" "$1" "$2" train.py "$3" --work-dir="$4" \
    --launcher=slurm "${@:5}"
