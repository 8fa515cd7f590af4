#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (created/updated first).
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/test_parsing.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${GUARDRAIL_VENV:-.venv}/bin/python" -m pytest "$@"
