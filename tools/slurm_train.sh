#!/usr/bin/env bash
# Training on a Slurm cluster with srun (one task per GPU).
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# Runs `srun ... $PYTHON -u tools/train.py CONFIG --work-dir WORK_DIR --launcher slurm [args]`.
# Environment:
#   GPUS (8): tasks in all (--ntasks);  GPUS_PER_NODE (8): --gres=gpu:N and --ntasks-per-node
#       (0 = a CPU job: no --gres; tasks per node then from TASKS_PER_NODE when set);
#   CPUS_PER_TASK (5): --cpus-per-task;  SRUN_ARGS: extra srun arguments (word-split);
#   PYTHON (python);  MMVRWKV_DIST_BACKEND, as in tools/dist_train.sh.
# The repository root is prepended to PYTHONPATH, so a clone works without installing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"
usage_check 4 $# "$0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]"
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 WORK_DIR=$4
srun_exec "$PARTITION" "$JOB_NAME" train.py "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm \
  "${@:5}"
