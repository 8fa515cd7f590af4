#!/usr/bin/env bash
# Serve a GuardReasoner-VL GGUF (from `python -m guardrail export gguf`) with an OpenAI-compatible
# llama.cpp server, on CPU, for guardrail's remote backend:
#   Guard.from_endpoint("http://127.0.0.1:8080/v1", "guardreasoner-vl")
#
#   MODEL   the language-model GGUF      MMPROJ  the vision projector GGUF (mmproj)
#   HOST (default 127.0.0.1: this machine only; another address: set API_KEY too, see README.md)
#   PORT (default 8080)  CTX (default 8192)  THREADS (default: all cores)
#   API_KEY  require this bearer token
#   SERVER  "python" (llama-cpp-python's server, default) or "native" (llama.cpp's llama-server)
set -euo pipefail
: "${MODEL:?set MODEL to the model GGUF}" "${MMPROJ:?set MMPROJ to the mmproj GGUF}"
HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8080}" CTX="${CTX:-8192}" THREADS="${THREADS:-$(nproc)}"
if [ "${SERVER:-python}" = "native" ]; then
  # llama.cpp's own server renders the chat template stored in the GGUF (--jinja); it keeps the
  # previous prompt in its slot and evaluates only what follows the common start (cache_prompt,
  # on by default per request): the guard's instruction is evaluated once per slot
  key=()
  [ -n "${API_KEY:-}" ] && key=(--api-key "$API_KEY")
  exec llama-server -m "$MODEL" --mmproj "$MMPROJ" --host "$HOST" --port "$PORT" -c "$CTX" -t "$THREADS" \
    --alias "${SERVED_NAME:-guardreasoner-vl}" --jinja ${key[@]+"${key[@]}"} "$@"
fi
# pip install "llama-cpp-python[server]". guardrail's launcher runs llama-cpp-python's server with
# its qwen2.5-vl template fixed to end in "<|im_start|>assistant\n", the reference prompt.
# Prefix caching: llama-cpp-python 0.3.36's multimodal chat handler clears the context for every
# chat request; the launcher's --prefix_cache true (its default, said here) keeps it and evaluates
# only the tokens after the common start of the previous prompt, so the guard's instruction is
# evaluated once (measured: bench/remote_prefix_cache.py, docs/performance.md).
key=()
[ -n "${API_KEY:-}" ] && key=(--api_key "$API_KEY")
exec python -m guardrail.integrations.llamacpp_server --model "$MODEL" --clip_model_path "$MMPROJ" \
  --chat_format qwen2.5-vl --model_alias "${SERVED_NAME:-guardreasoner-vl}" --prefix_cache true \
  --n_ctx "$CTX" --n_threads "$THREADS" --port "$PORT" --host "$HOST" ${key[@]+"${key[@]}"} "$@"
