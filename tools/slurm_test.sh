#!/usr/bin/env bash
# Evaluation on a Slurm cluster with srun (one task per GPU).
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
#
# Runs `srun ... $PYTHON -u tools/test.py CONFIG CHECKPOINT --launcher slurm [args]`.
# Environment: GPUS (8), GPUS_PER_NODE (8), TASKS_PER_NODE, CPUS_PER_TASK (5), SRUN_ARGS,
# PYTHON (python), MMVRWKV_DIST_BACKEND, as in tools/slurm_train.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"
usage_check 4 $# "$0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]"
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 CHECKPOINT=$4
srun_exec "$PARTITION" "$JOB_NAME" test.py "$CONFIG" "$CHECKPOINT" --launcher=slurm "${@:5}"
