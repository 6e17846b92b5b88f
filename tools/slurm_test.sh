#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options]
# One srun task per GPU, GPUS_PER_NODE of them on each node. An empty
# CHECKPOINT ("") means none, for benchmarks that name their own weights.
exec "$(dirname "$0")/misc/srun_tool.sh" "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
