#!/usr/bin/env bash
# The one prepared GPU check, for a GPU machine without network access
# (Python 3.12, torch + nvcc, no mmengine/mmcv). From the repository root, in one run of a few
# minutes, it:
#   1. records nvidia-smi and the Python/torch environment;
#   2. installs the wheels of .device/wheels (mmengine & co., staged here beforehand by
#      tools/analysis/prepare_device.sh) with `pip install --no-index --no-deps --target
#      .device/site` and puts that folder on PYTHONPATH;
#   3. builds mmvrwkv._ext in place with the CUDA kernel for the local GPU's architecture
#      (detected through torch), timing the build;
#   4. runs the `cuda`-marked tests (log + junit xml);
#   5. runs the Bi-WKV op benchmark on cuda in bf16 and fp32 with --check (log, JSON, PNG);
#   6. runs tools/analysis/benchmark_model.py on cuda when that file exists;
#   7. writes $OUT/summary.txt (rc and time of every step, build time, test result, benchmark
#      tables and PASS/FAIL lines, tails of failed steps) and prints it.
# Every step runs under `timeout` and the script goes on when one fails. The whole run stays
# within GPU_CHECK_BUDGET seconds (default 330). Because only a few files come back from a
# device run, everything is also packed into $OUT/gpu_check.tar.gz and only the summary plus
# the most useful files stay loose when there would be more than GPU_CHECK_MAX_FILES (8; 0 =
# keep all).
#
# Dry run (GPU_CHECK_DRY_RUN=1, or automatically when torch sees no GPU): no build (the
# extension built here is used as it is), the tests still run (the cuda ones skip), and the
# op benchmark runs its --quick preset on the CPU.
#
# Usage:
#   bash tools/analysis/prepare_device.sh            # here, once: stage the wheels
#   OUT=/some/dir bash tools/analysis/gpu_check.sh   # there (carry .device/wheels)
# Environment: OUT (default work_dirs/gpu_check), PYTHON (default python3), GPU_CHECK_DRY_RUN
# (auto|0|1), GPU_CHECK_BUDGET, GPU_CHECK_SITE (default .device/site), GPU_CHECK_MAX_FILES.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/work_dirs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-330}
SITE=${GPU_CHECK_SITE:-$ROOT/.device/site}
MAX_FILES=${GPU_CHECK_MAX_FILES:-8}
START=$(date +%s)
STEPS=$OUT/.steps
: >"$STEPS"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

DRY=${GPU_CHECK_DRY_RUN:-auto}
if [ "$DRY" = auto ]; then
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    DRY=0
  else
    DRY=1
  fi
fi
if [ "$DRY" = 1 ]; then DEV=cpu; else DEV=cuda; fi
echo "[gpu_check] OUT=$OUT dry_run=$DRY device=$DEV budget=${BUDGET}s python=$PY"

# run_step NAME MAX_SECONDS COMMAND: run COMMAND (a bash string) under timeout, output in
# $OUT/NAME.log, record "NAME rc seconds" in $STEPS. The timeout shrinks to what is left of
# the budget (minus a reserve for the summary); with too little left the step is skipped.
run_step() {
  local name=$1 max=$2 cmd=$3 now left t s rc
  now=$(date +%s)
  left=$((START + BUDGET - now - 15))
  t=$max
  [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt 5 ]; then
    echo "$name skipped 0 out-of-time-budget" >>"$STEPS"
    echo "[gpu_check] $name: skipped (time budget spent)"
    return
  fi
  echo "[gpu_check] $name (timeout ${t}s): $cmd"
  s=$(date +%s)
  timeout -k 10 "$t" bash -c "$cmd" >"$OUT/$name.log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - s))
  local note=ok
  [ "$rc" -ne 0 ] && note=failed
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="timeout(${t}s)"
  [ "$name" = pytest_cuda ] && [ "$rc" -eq 5 ] && note=no-tests-selected
  echo "$name $rc $dt $note" >>"$STEPS"
  echo "[gpu_check] $name: rc=$rc in ${dt}s"
}
skip_step() {  # skip_step NAME REASON
  echo "$1 - 0 skipped:$2" >>"$STEPS"
  echo "[gpu_check] $1: skipped ($2)"
}

# 1. environment -------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1; then
  run_step nvidia-smi 30 "nvidia-smi; echo; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu --format=csv"
else
  skip_step nvidia-smi 'nvidia-smi not found'
fi
run_step env 60 "'$PY' - <<'EOF'
import os, platform, subprocess, torch
print('python', platform.python_version(), platform.platform())
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'threads', torch.get_num_threads())
print('cuda available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('gpu', p.name, 'capability %d.%d' % (p.major, p.minor), 'SMs', p.multi_processor_count,
          'L2', getattr(p, 'L2_cache_size', '?'), 'memory', p.total_memory)
for tool in ('nvcc', 'ninja'):
    try:
        out = subprocess.run([tool, '--version'], capture_output=True, text=True).stdout.strip()
        print(tool, out.splitlines()[-1] if out else '?')
    except OSError:
        print(tool, 'not found')
try:
    print('git', subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip())
except OSError:
    pass
EOF"

# 2. wheels (mmengine & co.) -----------------------------------------------------------------
if ls "$ROOT"/.device/wheels/*.whl >/dev/null 2>&1; then
  run_step wheels 90 "'$PY' -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' '$ROOT'/.device/wheels/*.whl && ls '$SITE'"
  export PYTHONPATH="$SITE:$PYTHONPATH"
elif "$PY" -c 'import mmengine' 2>/dev/null; then
  skip_step wheels 'no .device/wheels; mmengine already importable'
else
  skip_step wheels 'no .device/wheels (run tools/analysis/prepare_device.sh and carry .device/wheels)'
fi

# 3. build ---------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  skip_step build 'dry run: the extension built here is used as it is'
else
  ARCH=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)
  echo "[gpu_check] building for TORCH_CUDA_ARCH_LIST=$ARCH"
  run_step build 240 "MMVRWKV_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST='$ARCH' MAX_JOBS=\${MAX_JOBS:-16} '$PY' setup.py build_ext --inplace"
fi
run_step ext 60 "'$PY' -c \"from mmvrwkv.ops import ext_available, ext_has_cuda, available_backends; from mmvrwkv.ops._ext import ext_load_error; print('ext_available', ext_available(), 'ext_has_cuda', ext_has_cuda(), 'backends', available_backends(), 'load_error', ext_load_error())\""

# 4. cuda tests ----------------------------------------------------------------------------
run_step pytest_cuda 150 "'$PY' -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors --junitxml='$OUT/pytest_cuda.xml' tests/"

# 5. op benchmark ----------------------------------------------------------------------------
BENCH=tools/analysis/benchmark_bi_wkv.py
if [ "$DRY" = 1 ]; then
  Q='--device cpu --quick'
  FP32_EXTRA=''
else
  Q='--device cuda'
  FP32_EXTRA='--B 1 64'
fi
run_step bench_bf16 150 "'$PY' $BENCH $Q --dtype bfloat16 --check --no-progress --json '$OUT/bench_bf16.json' --plot '$OUT/bench_bf16.png'"
run_step bench_fp32 100 "'$PY' $BENCH $Q --dtype float32 $FP32_EXTRA --check --no-progress --json '$OUT/bench_fp32.json' --plot '$OUT/bench_fp32.png'"

# 6. model benchmark (when it exists) ------------------------------------------------------
MODEL=tools/analysis/benchmark_model.py
if [ ! -f "$MODEL" ]; then
  skip_step bench_model "$MODEL not found"
elif [ "$DRY" = 1 ]; then
  if "$PY" "$MODEL" --help 2>/dev/null | grep -q -- '--quick'; then
    run_step bench_model 90 "'$PY' $MODEL --device cpu --quick --json '$OUT/model.json' --plot '$OUT/model.png'"
  else
    skip_step bench_model 'dry run and the model benchmark has no --quick'
  fi
else
  run_step bench_model 120 "'$PY' $MODEL --device cuda --json '$OUT/model.json' --plot '$OUT/model.png'"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv \
    >>"$OUT/nvidia-smi.log" 2>&1
fi

# 7. summary -------------------------------------------------------------------------------
SUM=$OUT/summary.txt
{
  echo "gpu_check summary  $(date -u +%Y-%m-%dT%H:%M:%SZ)  host=$(hostname)  dry_run=$DRY  device=$DEV"
  echo "total ${BUDGET}s budget, $(($(date +%s) - START))s used"
  grep -E '^(gpu|torch|python|cuda available|nvcc|git) ' "$OUT/env.log" 2>/dev/null | sed 's/^/  /'
  echo
  echo "step          rc   seconds  note"
  while read -r name rc dt note; do
    printf '%-12s %4s %9s  %s\n' "$name" "$rc" "$dt" "$note"
  done <"$STEPS"
  echo
  if grep -qE '^build [0-9]' "$STEPS"; then
    echo "build time: $(awk '$1=="build"{print $3}' "$STEPS")s"
  fi
  [ -f "$OUT/ext.log" ] && echo "extension: $(tail -n 1 "$OUT/ext.log")"
  [ -f "$OUT/pytest_cuda.log" ] && echo "pytest -m cuda: $(grep -E '(passed|failed|skipped|deselected|error|no tests ran)' "$OUT/pytest_cuda.log" | tail -n 1)"
  for b in bench_bf16 bench_fp32 bench_model; do
    if [ -f "$OUT/$b.log" ]; then
      echo
      echo "== $b"
      grep -vE '^\s*$' "$OUT/$b.log" | grep -vE '^Traceback|^\s+File ' | tail -n 140
    fi
  done
  echo
  echo "== target lines"
  cat "$OUT"/bench_*.log 2>/dev/null | grep -E '^(PASS|FAIL|SKIP):' || echo "(none)"
  # The tail of every failed step's log.
  while read -r name rc dt note; do
    if [ "$rc" != 0 ] && [ "$rc" != - ] && [ "$note" != no-tests-selected ] && [ -f "$OUT/$name.log" ]; then
      echo
      echo "== tail of $name.log (rc=$rc)"
      tail -n 25 "$OUT/$name.log"
    fi
  done <"$STEPS"
} >"$SUM" 2>&1
rm -f "$STEPS"

# Pack: a device run returns at most a few files. Keep summary + tarball + the most useful.
if [ "$MAX_FILES" -gt 0 ] && [ "$(find "$OUT" -maxdepth 1 -type f | wc -l)" -gt "$MAX_FILES" ]; then
  TAR=gpu_check.tar.gz
  tmp=$(mktemp /tmp/gpu_check.XXXXXX)
  tar -czf "$tmp" -C "$OUT" --exclude="./$TAR" . && chmod 644 "$tmp" && mv "$tmp" "$OUT/$TAR"
  keep="summary.txt $TAR"
  n=2
  for f in bench_bf16.png bench_fp32.png model.png bench_bf16.json bench_fp32.json model.json \
           pytest_cuda.log build.log; do
    if [ -f "$OUT/$f" ] && [ "$n" -lt "$MAX_FILES" ]; then
      keep="$keep $f"
      n=$((n + 1))
    fi
  done
  for f in "$OUT"/*; do
    b=$(basename "$f")
    case " $keep " in *" $b "*) ;; *) rm -rf "$f" ;; esac
  done
  echo "packed: everything in $TAR; loose: $keep" >>"$SUM"
fi
cat "$SUM"
