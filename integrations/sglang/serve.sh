#!/usr/bin/env bash
# Serve a GuardReasoner-VL model with SGLang's OpenAI-compatible server, for guardrail's remote backend:
#   Guard.from_endpoint("http://HOST:30000/v1", "guardreasoner-vl")
#
#   MODEL (default yueliu1999/GuardReasoner-VL-7B)   PORT (default 30000)   TP (default 1)
#   HOST (default 127.0.0.1: this machine only; another address: set API_KEY too, see README.md)
#   API_KEY  require this bearer token               MAX_LEN (default 32768)
set -euo pipefail
MODEL="${MODEL:-yueliu1999/GuardReasoner-VL-7B}"
args=(
  --model-path "$MODEL"
  --served-model-name "${SERVED_NAME:-guardreasoner-vl}"
  --port "${PORT:-30000}"
  --host "${HOST:-127.0.0.1}"
  --tp-size "${TP:-1}"
  --context-length "${MAX_LEN:-32768}"
  --mem-fraction-static "${MEM_FRACTION:-0.85}"
  # the Qwen2.5-VL chat template, which GuardReasoner-VL was trained with
  --chat-template qwen2-vl
  # prefix caching: SGLang's radix cache is on by default and reuses the guard's instruction
  # across requests; do not pass --disable-radix-cache
)
[ -n "${API_KEY:-}" ] && args+=(--api-key "$API_KEY")
exec python -m sglang.launch_server "${args[@]}" "$@"
