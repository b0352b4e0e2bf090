#!/usr/bin/env bash
# Evaluation on a Slurm cluster with srun (one task per GPU).
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
#
# Runs `srun ... $PYTHON -u tools/test.py CONFIG CHECKPOINT --launcher slurm [args]`.
# Environment: GPUS (8), GPUS_PER_NODE (8), TASKS_PER_NODE, CPUS_PER_TASK (5), SRUN_ARGS,
# PYTHON (python), MMVRWKV_DIST_BACKEND, as in tools/slurm_train.sh.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
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
  "$PYTHON" -u "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm "$@"
