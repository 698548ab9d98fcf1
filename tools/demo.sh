#!/usr/bin/env bash
# `make demo`: the end-to-end demo (python -m kil_eval.demo) in the workspace.
# DEMO=quick runs every stage at toy size (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DEMO:-}" = "quick" ]; then
    exec python -m kil_eval.demo --quick --out "${DEMO_OUT:-outputs/demo_quick}" "$@"
fi
exec python -m kil_eval.demo --out "${DEMO_OUT:-outputs/demo}" "$@"
