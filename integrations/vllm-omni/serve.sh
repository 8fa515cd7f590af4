#!/usr/bin/env bash
# Serve GuardReasoner-Omni with vLLM's OpenAI-compatible server, for guardrail's remote backend:
#   Guard.from_endpoint("http://HOST:8000/v1", "guardreasoner-omni", profile="guardreasoner-omni")
#
#   MODEL      hub id or local path   (default: zhu-thu-22/GuardReasoner-Omni-7B; -3B also works)
#   HOST       address to bind       (default 127.0.0.1: this machine only; see ../README.md)
#   PORT       (default 8000)         API_KEY   require this bearer token (recommended off localhost)
#   TP         tensor-parallel GPUs   (default 1; the 7B thinker fits one 40 GB GPU in bf16)
#   MAX_IMAGES / MAX_VIDEOS / MAX_AUDIOS  per request (default 8 / 2 / 2: guardrail's InputLimits)
#   MAX_LEN    context length         (default 24576, as the reference's src/generate.py: 128 frames
#                                      at 64x28x28 pixels are 4096 video tokens, 300 s of audio 7500)
set -euo pipefail
MODEL="${MODEL:-zhu-thu-22/GuardReasoner-Omni-7B}"
args=(
  "$MODEL"
  --served-model-name "${SERVED_NAME:-guardreasoner-omni}"
  --host "${HOST:-127.0.0.1}"
  --port "${PORT:-8000}"
  --dtype bfloat16
  --tensor-parallel-size "${TP:-1}"
  --max-model-len "${MAX_LEN:-24576}"
  --max-num-seqs "${MAX_SEQS:-256}"
  --gpu-memory-utilization "${GPU_UTIL:-0.9}"
  --limit-mm-per-prompt "{\"image\": ${MAX_IMAGES:-8}, \"video\": ${MAX_VIDEOS:-2}, \"audio\": ${MAX_AUDIOS:-2}}"
  # guardrail sends each clip already sampled (1 fps, 1-128 frames, 4x28x28-64x28x28 pixels, as the
  # reference): keep every frame it sends (vLLM would otherwise resample to 32 frames) ...
  --media-io-kwargs '{"video": {"num_frames": -1}}'
  # ... and leave their size alone: frames within [min, max] are not resized; images are capped
  # at the reference's 2048x28x28 pixels (the processor's own video floor, 128x28x28, would
  # upscale the reference's frames)
  --mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": 1605632}'
  # greedy decoding comes from the request (temperature 0); don't let generation_config override it
  --generation-config vllm
)
[ -n "${API_KEY:-}" ] && args+=(--api-key "$API_KEY")
exec vllm serve "${args[@]}" "$@"
