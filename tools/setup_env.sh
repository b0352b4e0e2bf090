#!/usr/bin/env bash
# One-stop set-up for a fresh machine: a virtual environment in $VENV (default .venv)
# with torch, the OpenMMLab 2.0 stack (mmcv built from source), test tools, and mmvrwkv
# itself installed in development mode with its compiled Bi-WKV extension.
# Re-running is cheap: every step is skipped or cached when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
export PYTHON="$PY"
# Keep setuptools (>=77,<80) and the torch pair fixed through every later install step.
export PIP_CONSTRAINT="$PWD/requirements/constraints.txt"
$PY -m pip install -q -r requirements/build.txt
$PY -m pip install -q -r requirements/torch.txt
$PY -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
bash tools/install_mmcv.sh
# mmcv is already there; the task packages' own requirements are light.
$PY -m pip install -q -r requirements/mminstall.txt
# openmim without opendatalab/openxlab (see requirements/mim.txt)
$PY -m pip install -q -r requirements/mim.txt
$PY -m pip install -q --no-deps openmim==0.3.9
# Build mmvrwkv._ext (CPU kernel always, CUDA kernel when torch is a CUDA build and nvcc exists).
if [ -f setup.py ]; then
  $PY -m pip install -q --no-build-isolation -e . 
fi
$PY -c "import torch, mmengine; print('[setup_env] torch', torch.__version__, '| mmengine', mmengine.__version__)"
