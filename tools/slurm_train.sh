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
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

RES=()
if [ "$GPUS_PER_NODE" -gt 0 ]; then
  RES=(--gres=gpu:"$GPUS_PER_NODE" --ntasks-per-node="$GPUS_PER_NODE")
elif [ -n "${TASKS_PER_NODE:-}" ]; then
  RES=(--ntasks-per-node="$TASKS_PER_NODE")
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086  # SRUN_ARGS is a list of words
exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  ${RES[@]+"${RES[@]}"} \
  --ntasks="$GPUS" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  $SRUN_ARGS \
  "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "$@"
