#!/usr/bin/env bash
# Serve Qwen3Guard-Gen with vLLM's OpenAI-compatible server, for guardrail's remote backend:
#   Guard.from_endpoint("http://HOST:8000/v1", "qwen3guard", profile="qwen3guard")
#
#   MODEL      hub id or local path   (default: Qwen/Qwen3Guard-Gen-4B; -0.6B and -8B also work)
#   HOST       address to bind       (default 127.0.0.1: this machine only; set API_KEY too when
#                                      binding other interfaces, see ../vllm/README.md)
#   PORT       (default 8000)         API_KEY   require this bearer token (recommended off localhost)
#   TP         tensor-parallel GPUs   (default 1; 8B fits one 24 GB GPU in bf16)
#   MAX_LEN    context length         (default 32768, the model card's; answers are ~10 tokens)
set -euo pipefail
MODEL="${MODEL:-Qwen/Qwen3Guard-Gen-4B}"
args=(
  "$MODEL"
  --served-model-name "${SERVED_NAME:-qwen3guard}"
  --host "${HOST:-127.0.0.1}"
  --port "${PORT:-8000}"
  --dtype bfloat16
  --tensor-parallel-size "${TP:-1}"
  --max-model-len "${MAX_LEN:-32768}"
  --gpu-memory-utilization "${GPU_UTIL:-0.9}"
  # greedy decoding comes from the request (temperature 0); don't let generation_config override it
  --generation-config vllm
  # text-only guard: no multimodal inputs
)
if [[ -n "${API_KEY:-}" ]]; then
  args+=(--api-key "$API_KEY")
fi
exec vllm serve "${args[@]}"
