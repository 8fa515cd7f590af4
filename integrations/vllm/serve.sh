#!/usr/bin/env bash
# Serve a GuardReasoner-VL model with vLLM's OpenAI-compatible server, for guardrail's remote backend:
#   Guard.from_endpoint("http://HOST:8000/v1", "guardreasoner-vl")
#
#   MODEL      hub id or local path   (default: yueliu1999/GuardReasoner-VL-7B; -3B, -Eco-3B, -Eco-7B also work)
#   HOST       address to bind       (default 127.0.0.1: this machine only; 0.0.0.0 = every interface,
#                                      then set API_KEY too, see README.md)
#   PORT       (default 8000)         API_KEY   require this bearer token (recommended off localhost)
#   TP         tensor-parallel GPUs   (default 1; 7B fits one 24 GB GPU in bf16, 3B one 16 GB GPU)
#   MAX_IMAGES images per request     (default 8, guardrail's InputLimits.max_images default)
#   MAX_LEN    context length         (default 32768, as the reference evaluation; prompts are short,
#                                      outputs ~200 tokens, so 8192 is plenty when memory is tight)
set -euo pipefail
MODEL="${MODEL:-yueliu1999/GuardReasoner-VL-7B}"
args=(
  "$MODEL"
  --served-model-name "${SERVED_NAME:-guardreasoner-vl}"
  --host "${HOST:-127.0.0.1}"
  --port "${PORT:-8000}"
  --dtype bfloat16
  --tensor-parallel-size "${TP:-1}"
  --max-model-len "${MAX_LEN:-32768}"
  --max-num-seqs "${MAX_SEQS:-256}"
  --gpu-memory-utilization "${GPU_UTIL:-0.9}"
  # guards read images, never videos; bounding both keeps vLLM's memory profiling honest
  --limit-mm-per-prompt "{\"image\": ${MAX_IMAGES:-8}, \"video\": 0}"
  # cap image tokens: Qwen2.5-VL's default max_pixels (12.8 MP) costs up to 16K tokens an image
  --mm-processor-kwargs '{"max_pixels": 1003520}'
  # greedy decoding comes from the request (temperature 0); don't let generation_config override it
  --generation-config vllm
  # every guard prompt starts with the same instruction (guardrail keeps it byte-identical up to
  # the user's text): reuse its KV blocks across requests (on by default in vLLM's V1 engine;
  # explicit so an older vLLM or a changed default does not silently recompute it)
  --enable-prefix-caching
)
[ -n "${API_KEY:-}" ] && args+=(--api-key "$API_KEY")
exec vllm serve "${args[@]}" "$@"
