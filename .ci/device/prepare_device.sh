#!/usr/bin/env bash
# Stage what .ci/device/gpu_check.sh needs on a GPU machine without network access:
# the wheels of mmengine and its pure-Python dependencies, copied into
# the git-ignored folder .device/wheels of this checkout so that they can travel with it.
#
#   bash .ci/device/prepare_device.sh [WHEEL_DIR]
#
# WHEEL_DIR defaults to $DEVICE_WHEELS or ../shared/device-wheels (beside the checkout).
# Prints the folder to carry (.device/wheels) and its size.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:-${DEVICE_WHEELS:-../shared/device-wheels}}
DST=.device/wheels
if ! ls "$SRC"/*.whl >/dev/null 2>&1; then
  echo "prepare_device: no wheels in $SRC" >&2
  exit 1
fi
if ! git check-ignore -q .device/wheels 2>/dev/null; then
  echo "prepare_device: warning: .device/ is not git-ignored here" >&2
fi
mkdir -p "$DST"
rm -f "$DST"/*.whl
cp "$SRC"/*.whl "$DST"/
chmod u+w "$DST"/*.whl
echo "prepare_device: $(ls "$DST"/*.whl | wc -l) wheels in $DST ($(du -sh "$DST" | cut -f1)):"
ls "$DST"
echo "carry: [\"$DST\"]  then run: OUT=\$OUT bash .ci/device/gpu_check.sh"
