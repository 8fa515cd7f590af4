#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install everything the demo and
# the tests need, pinned by scripts/constraints.txt. Re-running is cheap: nothing is reinstalled
# unless pyproject.toml or the constraints changed.
#
#   GUARDRAIL_VENV   where the venv lives (default: .venv in the checkout)
#   PYTHON           the interpreter to build it with (default: python3.11, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GUARDRAIL_VENV:-.venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.guardrail-install"
want="$(cat pyproject.toml scripts/constraints.txt scripts/setup-env.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# (grep drops the warnings about this machine's unused local package indexes)
pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
echo "==> installing torch (CPU-usable wheels pinned in scripts/constraints.txt)" >&2
pip install -q -c scripts/constraints.txt torch torchvision
# llama-cpp-python compiles llama.cpp from source the first time (several minutes on 2 cores);
# pip caches the wheel, so later environments on the same machine install it in seconds.
echo "==> installing guardrail-vl with all extras and the LiteLLM proxy for its tests (llama-cpp-python may compile: be patient)" >&2
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
  pip install -q -c scripts/constraints.txt -e ".[all,dev,litellm]" "llama-cpp-python[server]"
# llama.cpp's GGUF converter comes from the llama-cpp-python source distribution: fetch it now,
# while the package index is reachable, so that the main job's GGUF export later works offline.
"$VENV/bin/python" -c "from guardrail.export import converter_source; converter_source()" \
  || echo "==> could not fetch llama.cpp's GGUF converter now; the GGUF export fetches it when needed" >&2
echo "$want" > "$stamp"
echo "==> environment ready: $VENV" >&2
