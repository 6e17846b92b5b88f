#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     tools/misc/srun_tool.sh PARTITION JOB_NAME TOOL [TOOL arguments]
# The srun job of tools/slurm_{train,test}.sh: GPUS tasks, GPUS_PER_NODE of them
# on each node, each running `python -u tools/TOOL [TOOL arguments]`.
set -x

PARTITION=$1
JOB_NAME=$2
TOOLS=$(dirname "$(dirname "$0")")
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

# SRUN_ARGS is split into words on purpose.
PYTHONPATH="$TOOLS/..":$PYTHONPATH \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    python -u "$TOOLS/$3" "${@:4}"
