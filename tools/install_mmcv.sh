#!/usr/bin/env bash
# Build and install mmcv 2.1.0 (with its CPU ops, and CUDA ops when a GPU is visible or
# FORCE_CUDA=1) against the torch already installed in the active Python.
#
# Why: mmdet 3.3.0 / mmseg 1.2.2 need mmcv < 2.2.0, and mmcv 2.1.0 has no wheel for
# current torch. Its setup.py forces -std=c++17, while torch >= 2.10 headers need C++20,
# so the standard is raised in a private copy of the sdist before building.
# A built wheel is cached per (python, torch, cuda) under $MMCV_WHEEL_CACHE and re-used.
set -euo pipefail
PY=${PYTHON:-python}
PY=$(command -v "$PY")  # absolute: the build runs in another directory
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE=${MMCV_WHEEL_CACHE:-$HOME/.cache/mmvrwkv/mmcv-wheels}

if $PY -c "import mmcv, sys; sys.exit(0 if mmcv.__version__ == '$MMCV_VERSION' else 1)" 2>/dev/null \
   && $PY -c "import mmcv.ops" 2>/dev/null; then
  echo "[install_mmcv] mmcv $MMCV_VERSION with ops already installed"; exit 0
fi

TAG=$($PY - <<'PY'
import sys, torch
cuda = torch.version.cuda or 'cpu'
gpu = 'gpu' if torch.cuda.is_available() else 'nogpu'
print(f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__.replace('+', '_')}-cuda{cuda}-{gpu}")
PY
)
[ "${FORCE_CUDA:-0}" = "1" ] && TAG="$TAG-forcecuda"
DEST="$CACHE/$TAG"
mkdir -p "$DEST"
WHEEL=$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  echo "[install_mmcv] building mmcv $MMCV_VERSION for $TAG (CPU ops take ~8 min on 2 cores)"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  $PY -m pip download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$WORK" >/dev/null
  tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
  SRC="$WORK/mmcv-$MMCV_VERSION"
  # torch's headers decide the C++ standard: raise it wherever mmcv hard-codes c++14/17.
  NEED_CXX20=$($PY -c "import torch; v=tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); print(int(v>=(2,10)))")
  if [ "$NEED_CXX20" = "1" ]; then
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  fi
  # -g0: Python's CFLAGS carry -g, and debug info for ~80 torch-header-heavy files is a
  # large share of the build time (measured: one op file compiles in about half the time).
  (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="${CFLAGS:-} -g0" \
     $PY -m pip wheel --no-build-isolation --no-deps . -w "$DEST")
  WHEEL=$(ls "$DEST"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
else
  echo "[install_mmcv] re-using $WHEEL"
fi
$PY -m pip install --no-deps "$WHEEL"
$PY -c "import mmcv, mmcv.ops; print('[install_mmcv] mmcv', mmcv.__version__, 'with ops OK')"
