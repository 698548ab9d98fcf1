#!/usr/bin/env bash
# Check a KIL export with the `lerobot` package itself (not in CI: LeRobot's pins conflict with this
# stack's torch and transformers, so it gets a venv of its own, about 6 GB with torch's CUDA wheels).
#
#   tools/lerobot_check.sh [LEROBOT_VENV]      (default /tmp/kil-lerobot-venv)
#
# Records two simulator demonstrations, exports them with kil_policy.export_lerobot (in the
# workspace venv), then loads the dataset with LeRobotDataset in LeRobot's venv and compares every
# frame with the parquet rows (tools/lerobot_check.py). LEROBOT_VERSION pins the release.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-/tmp/kil-lerobot-venv}
version=${LEROBOT_VERSION:-0.4.4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import lerobot" 2>/dev/null; then
    echo "[lerobot_check] installing lerobot==$version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "lerobot==$version"
fi
cd "$root"
set +u  # (colcon's setup scripts read unset variables)
# shellcheck source=/dev/null
. install/setup.bash
set -u
python -c "
from pathlib import Path
from kil_eval.record_demos import record
record('place_mug', 2, Path('$work/demos'), camera_hz=10.0, width=96, height=72, progress=False)
"
python -m kil_policy.export_lerobot "$work/demos" "$work/dataset" --keypoints-topic /kil/keypoints/oracle 2>/dev/null
"$venv/bin/python" tools/lerobot_check.py "$work/dataset"
