#!/usr/bin/env bash
# The main job (examples/demo.py): train a tiny demo guard offline, or use GUARDRAIL_MODEL, and
# moderate the sample traffic in examples/ through every channel. The environment is created or
# updated first. Arguments go to examples/demo.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
if [ -z "${GUARDRAIL_MODEL:-}" ]; then
  # the demo guard is built here: nothing is downloaded from the Hugging Face hub
  export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
fi
exec "${GUARDRAIL_VENV:-.venv}/bin/python" examples/demo.py "$@"
