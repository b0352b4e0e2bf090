#!/usr/bin/env bash
# Distributed training on one or more machines with torchrun (torch.distributed.run).
#
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
#
# GPUS processes per machine run tools/train.py CONFIG --launcher pytorch [args]. Environment:
#   NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500): multi-machine runs start
#       the script on every machine with the same NNODES/MASTER_ADDR/PORT and its NODE_RANK;
#   PYTHON (python): the interpreter (torchrun is run as `$PYTHON -m torch.distributed.run`,
#       so it always belongs to that interpreter);
#   MMVRWKV_DIST_BACKEND: torch.distributed backend (default: the config's, gloo on CPU).
# Without a visible GPU (e.g. CUDA_VISIBLE_DEVICES=) the processes train on the CPU with gloo.
# The repository root is prepended to PYTHONPATH, so a clone works without installing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"
usage_check 2 $# "$0 CONFIG GPUS [train.py args...]"
CONFIG=$1 GPUS=$2
torchrun_exec "$GPUS" train.py "$CONFIG" --launcher pytorch "${@:3}"
