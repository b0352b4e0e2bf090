#!/usr/bin/env bash
# The one prepared GPU check, for a GPU machine without network access
# (Python 3.12, torch + nvcc, no mmengine/mmcv). From the repository root, in one run of a few
# minutes, it:
#   1. records nvidia-smi and the Python/torch environment;
#   2. installs the wheels of .device/wheels (mmengine & co., staged here beforehand by
#      .ci/device/prepare_device.sh) with `pip install --no-index --no-deps --target
#      .device/site` and puts that folder on PYTHONPATH;
#   3. builds mmvrwkv._ext in place with the CUDA kernel for the local GPU's architecture
#      (detected through torch), timing the build;
#   4. runs the `cuda`-marked tests (log + junit xml);
#   5. runs the Bi-WKV op benchmark on cuda in bf16 and fp32, and the Bi-WKV6 op in bf16, with --check (log, JSON, PNG);
#   6. runs tools/analysis/benchmark_model.py on cuda when that file exists;
#   7. checks the op benchmark's JSON against the targets (.ci/device/check_targets.py);
#   8. writes $OUT/summary.txt (rc and time of every step, build time, test result, benchmark
#      tables and PASS/FAIL lines, tails of failed steps) and prints it.
# Every step runs under a timeout and the script goes on when one fails. The whole run stays
# within GPU_CHECK_BUDGET seconds (default 330). Because only a few files come back from a
# device run, everything is also packed into $OUT/gpu_check.tar.gz and only the summary plus
# the most useful files stay loose when there would be more than GPU_CHECK_MAX_FILES (8; 0 =
# keep all). The budget, the step log, the summary and the packing are done by
# .ci/device/gpu_check_steps.py (standard library only); this file is only the steps.
#
# Dry run (GPU_CHECK_DRY_RUN=1, or automatically when torch sees no GPU): no build (the
# extension built here is used as it is), the tests still run (the cuda ones skip), and the
# benchmarks run their --quick presets on the CPU.
#
# Usage:
#   bash .ci/device/prepare_device.sh            # here, once: stage the wheels
#   OUT=/some/dir bash .ci/device/gpu_check.sh   # there (carry .device/wheels)
#   OUT=/tmp/gpucheck_out GPU_CHECK_DRY_RUN=1 bash .ci/device/gpu_check.sh   # CPU dry run
# Environment: OUT (default work_dirs/gpu_check), PYTHON (default python3), GPU_CHECK_DRY_RUN
# (auto|0|1), GPU_CHECK_BUDGET, GPU_CHECK_SITE (default .device/site), GPU_CHECK_MAX_FILES.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/work_dirs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-$ROOT/.device/site}
A=tools/analysis  # the benchmarks
D=.ci/device      # this script's helpers
export OUT GPU_CHECK_START=$(date +%s) GPU_CHECK_BUDGET=${GPU_CHECK_BUDGET:-330}
export GPU_CHECK_MAX_FILES=${GPU_CHECK_MAX_FILES:-8}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

steps() { "$PY" "$D/gpu_check_steps.py" "$@"; }
step() { steps run "$@"; }   # step NAME MAX_SECONDS 'COMMAND' [--note RC=TEXT]
skip() { steps skip "$@"; }  # skip NAME REASON

DRY=${GPU_CHECK_DRY_RUN:-auto}
if [ "$DRY" = auto ]; then
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    DRY=0
  else
    DRY=1
  fi
fi
if [ "$DRY" = 1 ]; then DEV=cpu; else DEV=cuda; fi
echo "[gpu_check] OUT=$OUT dry_run=$DRY device=$DEV budget=${GPU_CHECK_BUDGET}s python=$PY"
steps init

# 1. environment -------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
  step nvidia-smi 30 "nvidia-smi; echo; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu --format=csv"
else
  skip nvidia-smi 'nvidia-smi not found'
fi
step env 60 "'$PY' $D/gpu_check_steps.py env"

# 2. wheels (mmengine & co.) -----------------------------------------------------------------
if ls "$ROOT"/.device/wheels/*.whl >/dev/null 2>&1; then
  step wheels 90 "'$PY' -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' '$ROOT'/.device/wheels/*.whl && ls '$SITE'"
  export PYTHONPATH="$SITE:$PYTHONPATH"
elif "$PY" -c 'import mmengine' 2>/dev/null; then
  skip wheels 'no .device/wheels; mmengine already importable'
else
  skip wheels 'no .device/wheels (run .ci/device/prepare_device.sh and carry .device/wheels)'
fi

# 3. build ---------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  skip build 'dry run: the extension built here is used as it is'
else
  ARCH=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)
  echo "[gpu_check] building for TORCH_CUDA_ARCH_LIST=$ARCH"
  step build 240 "MMVRWKV_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST='$ARCH' MAX_JOBS=\${MAX_JOBS:-16} '$PY' setup.py build_ext --inplace"
fi
step ext 60 "'$PY' $D/gpu_check_steps.py ext"

# 4. cuda tests ----------------------------------------------------------------------------
step pytest_cuda 150 --note 5=no-tests-selected "'$PY' -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors --junitxml='$OUT/pytest_cuda.xml' tests/"

# 5. op benchmark ----------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then Q='--device cpu --quick'; FP32_EXTRA=''; else Q='--device cuda'; FP32_EXTRA='--B 1 64'; fi
BENCH="'$PY' $A/benchmark_bi_wkv.py $Q --check --no-progress"
step bench_bf16 150 "$BENCH --dtype bfloat16 --json '$OUT/bench_bf16.json' --plot '$OUT/bench_bf16.png'"
step bench_fp32 100 "$BENCH --dtype float32 $FP32_EXTRA --json '$OUT/bench_fp32.json' --plot '$OUT/bench_fp32.png'"
step bench_v6 60 "$BENCH --op bi_wkv6 --dtype bfloat16 --json '$OUT/bench_v6.json' --plot '$OUT/bench_v6.png'"

# 6. model benchmark (when it exists) ------------------------------------------------------
MODEL=$A/benchmark_model.py
if [ ! -f "$MODEL" ]; then
  skip bench_model "$MODEL not found"
elif [ "$DRY" = 1 ]; then
  step bench_model 90 "'$PY' $MODEL --device cpu --quick --no-progress --json '$OUT/model.json' --plot '$OUT/model.png'"
else
  step bench_model 120 "'$PY' $MODEL --device cuda --no-progress --json '$OUT/model.json' --plot '$OUT/model.png'"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
    >>"$OUT/nvidia-smi.log" 2>&1
fi

# 7. targets -------------------------------------------------------------------------------
step targets 30 "'$PY' $D/check_targets.py '$OUT'/bench_*.json"

# 8. summary and packing -------------------------------------------------------------------
steps summary --title "dry_run=$DRY  device=$DEV" --logs bench_bf16 bench_fp32 bench_v6 bench_model \
  --target-logs targets
steps pack --keep bench_bf16.png bench_fp32.png bench_v6.png model.png bench_bf16.json \
  bench_fp32.json bench_v6.json model.json pytest_cuda.log build.log
cat "$OUT/summary.txt"
