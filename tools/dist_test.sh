#!/usr/bin/env bash
# Distributed evaluation with torchrun (torch.distributed.run).
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
#
# GPUS processes per machine run tools/test.py CONFIG CHECKPOINT --launcher pytorch [args].
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON
# (python), MMVRWKV_DIST_BACKEND, as in tools/dist_train.sh. Without a visible GPU the
# processes run on the CPU with gloo. The repository root is prepended to PYTHONPATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"
usage_check 3 $# "$0 CONFIG CHECKPOINT GPUS [test.py args...]"
CONFIG=$1 CHECKPOINT=$2 GPUS=$3
torchrun_exec "$GPUS" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
