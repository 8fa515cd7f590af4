#!/usr/bin/env bash
# The main job: moderate the sample inputs in examples/ (environment created/updated first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "${GUARDRAIL_VENV:-.venv}/bin/python" examples/demo.py "$@"
