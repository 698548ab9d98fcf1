#!/usr/bin/env bash
# `make demo`: the end-to-end demo (python -m kil_eval.demo) in the workspace.
# DEMO=quick runs every stage at toy size (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
# TASK=pour_bottle (any task with a shipped spec) runs the same pipeline on that task.
task=${TASK:-place_mug}
suffix=$([ "$task" = place_mug ] || echo "_$task")
if [ "${DEMO:-}" = "quick" ]; then
    exec python -m kil_eval.demo --quick --task "$task" --out "${DEMO_OUT:-outputs/demo_quick$suffix}" "$@"
fi
exec python -m kil_eval.demo --task "$task" --out "${DEMO_OUT:-outputs/demo$suffix}" "$@"
