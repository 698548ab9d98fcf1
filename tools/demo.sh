#!/usr/bin/env bash
# `make demo`: runs tools/demo.py (the end-to-end slices that exist so far) in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
python tools/demo.py "$@"
