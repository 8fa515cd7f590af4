#!/usr/bin/env bash
# Serve a Llama Guard model with vLLM's OpenAI-compatible server, for guardrail's remote backend:
#   Guard.from_endpoint("http://HOST:8000/v1", "llama-guard", profile="llama-guard-4")
#
#   MODEL      hub id or local path   (default: meta-llama/Llama-Guard-4-12B; Llama-Guard-3-1B, -3-8B,
#                                      -3-11B-Vision also work: use profile="llama-guard-3")
#   HOST       address to bind       (default 127.0.0.1: this machine only; see ../README.md)
#   PORT       (default 8000)         API_KEY   require this bearer token (recommended off localhost)
#   TP         tensor-parallel GPUs   (default 1; LG4 12B fits one 40 GB GPU in bf16, 24 GB is tight)
#   MAX_IMAGES images per request     (default 8; Llama Guard 3 11B Vision reads 1)
#   MAX_LEN    context length         (default 16384: prompts are a category block and a conversation)
set -euo pipefail
MODEL="${MODEL:-meta-llama/Llama-Guard-4-12B}"
args=(
  "$MODEL"
  --served-model-name "${SERVED_NAME:-llama-guard}"
  --host "${HOST:-127.0.0.1}"
  --port "${PORT:-8000}"
  --dtype bfloat16
  --tensor-parallel-size "${TP:-1}"
  --max-model-len "${MAX_LEN:-16384}"
  --max-num-seqs "${MAX_SEQS:-256}"
  --gpu-memory-utilization "${GPU_UTIL:-0.9}"
  # guards read images, never videos
  --limit-mm-per-prompt "{\"image\": ${MAX_IMAGES:-8}, \"video\": 0}"
  # greedy decoding comes from the request (temperature 0); don't let generation_config override it
  --generation-config vllm
)
[ -n "${API_KEY:-}" ] && args+=(--api-key "$API_KEY")
exec vllm serve "${args[@]}" "$@"
