# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh (sourced, not run):
# the one place where torchrun and srun command lines are built from the environment.
# The callers check their own positional arguments (usage_check), name them, and pass the
# tool's full command line, the rest of their own arguments ("${@:N}") last.

# The repository root (this file lives in ROOT/tools); prepended to PYTHONPATH so that a
# clone works without installing.
MMVRWKV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$MMVRWKV_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# usage_check MIN_ARGS NUM_ARGS USAGE: exit 2 with "usage: USAGE" when too few arguments.
usage_check() {
  if [ "$2" -lt "$1" ]; then
    echo "usage: $3" >&2
    exit 2
  fi
}

# torchrun_exec NPROC TOOL [tool args...]: replace the shell by
#   $PYTHON -m torch.distributed.run --nnodes --node_rank --master_addr --master_port
#       --nproc_per_node=NPROC ROOT/tools/TOOL [tool args...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON
# (python; torchrun runs as `$PYTHON -m torch.distributed.run`, so it belongs to it).
torchrun_exec() {
  local nproc=$1 tool=$2
  shift 2
  exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$nproc" \
    "$MMVRWKV_ROOT/tools/$tool" "$@"
}

# srun_exec PARTITION JOB_NAME TOOL [tool args...]: replace the shell by
#   srun -p PARTITION --job-name [--gres --ntasks-per-node] --ntasks --cpus-per-task
#       --kill-on-bad-exit=1 $SRUN_ARGS $PYTHON -u ROOT/tools/TOOL [tool args...]
# Environment: GPUS (8): tasks in all (--ntasks); GPUS_PER_NODE (8): --gres=gpu:N and
# --ntasks-per-node (0 = a CPU job: no --gres; tasks per node then from TASKS_PER_NODE when
# set); CPUS_PER_TASK (5); SRUN_ARGS: extra srun arguments (word-split); PYTHON (python).
srun_exec() {
  local partition=$1 job_name=$2 tool=$3
  shift 3
  local gpus_per_node=${GPUS_PER_NODE:-8}
  local res=()
  if [ "$gpus_per_node" -gt 0 ]; then
    res=(--gres=gpu:"$gpus_per_node" --ntasks-per-node="$gpus_per_node")
  elif [ -n "${TASKS_PER_NODE:-}" ]; then
    res=(--ntasks-per-node="$TASKS_PER_NODE")
  fi
  # shellcheck disable=SC2086  # SRUN_ARGS is a list of words
  exec srun -p "$partition" \
    --job-name="$job_name" \
    ${res[@]+"${res[@]}"} \
    --ntasks="${GPUS:-8}" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$MMVRWKV_ROOT/tools/$tool" "$@"
}
