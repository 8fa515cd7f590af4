"""Frame sampling and frame sizing as Qwen's vision utilities do them (pure arithmetic).

``qwen_vl_utils`` / ``qwen_omni_utils`` (what GuardReasoner-Omni's reference script calls)
choose ``n`` frames from a clip of ``total`` frames at ``video_fps`` as
``clamp(total / video_fps * fps, min_frames, max_frames)``, capped at ``total`` and rounded
down to a multiple of 2, at the indices ``round(linspace(0, total - 1, n))``; the sampled rate
is ``n / total * video_fps``. Each frame is resized to multiples of 28 pixels within
``[min_pixels, max_pixels]`` keeping its aspect ratio (``smart_resize``). The code here is
written from that description; where it differs it says so.
"""

from __future__ import annotations

import math

from guardrail.errors import MediaError
from guardrail.media.types import VideoSampling

__all__ = ["FRAME_FACTOR", "frame_count", "frame_indices", "smart_resize"]

#: Frames come in pairs (the vision tower's temporal patch is 2 frames).
FRAME_FACTOR = 2
_MAX_RATIO = 200


def frame_count(total: int, video_fps: float, sampling: VideoSampling, cap: int | None = None) -> int:
    """How many frames to take from a clip of ``total`` frames at ``video_fps``.

    Unlike the reference (which raises for a clip of one frame), a one-frame clip gives 2
    (the frame twice), as an image is given to the vision tower."""
    max_frames = sampling.max_frames if cap is None else min(sampling.max_frames, cap)
    lo = max(FRAME_FACTOR, math.ceil(sampling.min_frames / FRAME_FACTOR) * FRAME_FACTOR)
    hi = max(FRAME_FACTOR, (max_frames // FRAME_FACTOR) * FRAME_FACTOR)
    wanted = total / video_fps * sampling.fps if video_fps > 0 else lo
    n = min(max(wanted, lo), hi, max(total, FRAME_FACTOR))
    return max(FRAME_FACTOR, int(n // FRAME_FACTOR) * FRAME_FACTOR)


def frame_indices(total: int, n: int) -> list[int]:
    """``round(linspace(0, total - 1, n))`` (round half to even, as torch does)."""
    if n <= 1:
        return [0] * n
    step = (total - 1) / (n - 1)
    return [min(total - 1, round(i * step)) for i in range(n)]


def smart_resize(height: int, width: int, sampling: VideoSampling) -> tuple[int, int]:
    """``(height, width)`` rounded to multiples of ``sampling.factor`` with the pixel count in
    ``[min_pixels, max_pixels]`` and the aspect ratio kept (Qwen's ``smart_resize``)."""
    f = sampling.factor
    if height <= 0 or width <= 0:
        raise MediaError(f"empty frame ({width}x{height})")
    if max(height, width) / min(height, width) > _MAX_RATIO:
        raise MediaError(f"frame aspect ratio over {_MAX_RATIO} ({width}x{height})")
    h = max(f, round(height / f) * f)
    w = max(f, round(width / f) * f)
    if h * w > sampling.max_pixels:
        beta = math.sqrt(height * width / sampling.max_pixels)
        h = max(f, math.floor(height / beta / f) * f)
        w = max(f, math.floor(width / beta / f) * f)
    elif h * w < sampling.min_pixels:
        beta = math.sqrt(sampling.min_pixels / (height * width))
        h = math.ceil(height * beta / f) * f
        w = math.ceil(width * beta / f) * f
    return h, w
