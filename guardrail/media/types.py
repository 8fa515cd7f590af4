"""The decoded media a guard sees, and how a profile wants video sampled. Pure: no imports.

A :class:`Video` is what is left of a clip after decoding and sampling: the frames the model
is shown (RGB ``uint8`` arrays of shape ``(height, width, 3)``, already resized to the
profile's pixel budget), the rate they were sampled at and where they came from. An
:class:`Audio` is a mono ``float32`` waveform at 16 kHz (what Qwen2.5-Omni's feature extractor
takes). Both are built by :mod:`guardrail.media` from every accepted source and are immutable
in practice; :meth:`Video.digest` / :meth:`Audio.digest` hash what the model sees (the verdict
cache keys use them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AUDIO_SAMPLE_RATE", "Audio", "MediaLayout", "Video", "VideoSampling"]

#: The sample rate of every decoded :class:`Audio` (Whisper-style feature extractors' rate).
AUDIO_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VideoSampling:
    """How frames are taken from a clip and sized (the defaults are GuardReasoner-Omni's
    reference settings: ``src/generate.py`` passes ``fps=1, min_frames=1, max_frames=128,
    min_pixels=4*28*28, max_pixels=64*28*28`` to ``qwen_omni_utils``).

    Frames are sampled as ``qwen_vl_utils`` does: ``n = duration * fps`` clamped to
    ``[min_frames, max_frames]`` and to the frames the clip has, rounded down to a multiple of
    2 (the vision tower's temporal patch), at evenly spaced indices; each frame is resized to
    multiples of ``factor`` pixels with ``min_pixels <= h*w <= max_pixels``.
    """

    fps: float = 1.0
    min_frames: int = 1
    max_frames: int = 128
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 64 * 28 * 28
    factor: int = 28


@dataclass(frozen=True, eq=False)
class Video:
    """A decoded, sampled clip. ``frames``: RGB ``uint8`` arrays ``(h, w, 3)``, all one size;
    ``fps``: the rate of the sampled frames (what the model's temporal positions use);
    ``source_fps``/``source_frames``/``duration_s``: the clip as decoded; ``indices``: which
    source frames were kept."""

    frames: tuple[Any, ...]
    fps: float
    source_fps: float
    source_frames: int
    duration_s: float
    indices: tuple[int, ...] = ()
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames."""
        h, w = self.frames[0].shape[:2]
        return int(w), int(h)

    def digest(self) -> str:
        """A hash of the frames' pixels and the sampled rate (what the model sees)."""
        if not self._digest:
            h = hashlib.blake2b(digest_size=20)
            h.update(f"V{len(self.frames)}:{self.fps!r}:".encode())
            for frame in self.frames:
                h.update(f"{frame.shape}:{frame.dtype}:".encode())
                h.update(frame.tobytes())
            self._digest.append(h.hexdigest())
        return self._digest[0]


@dataclass(frozen=True, eq=False)
class Audio:
    """A decoded clip: mono ``float32`` samples at ``sample_rate`` (16 kHz)."""

    samples: Any
    sample_rate: int = AUDIO_SAMPLE_RATE
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    def digest(self) -> str:
        """A hash of the samples and their rate (what the model hears)."""
        if not self._digest:
            h = hashlib.blake2b(digest_size=20)
            h.update(f"A{self.sample_rate}:{len(self.samples)}:{self.samples.dtype}:".encode())
            h.update(self.samples.tobytes())
            self._digest.append(h.hexdigest())
        return self._digest[0]


@dataclass(frozen=True)
class MediaLayout:
    """How a profile's prompt carries media, for the backends: each modality's
    ``(begin, placeholder, end)`` tokens (a slot becomes ``begin + placeholder * n + end``;
    None: the family has no such input), the image pixel cap the reference passes per image
    (None: the processor's own) and the video sampling."""

    image: tuple[str, str, str] | None = None
    video: tuple[str, str, str] | None = None
    audio: tuple[str, str, str] | None = None
    image_max_pixels: int | None = None
    sampling: VideoSampling = VideoSampling()
