"""Video and audio inputs: decoding, checking and sampling, before anything reaches a model.

``guard.moderate(..., videos=[...], audios=[...])`` hands each clip to :func:`load_video` /
:func:`load_audio` (through :func:`guardrail.inputs.normalize_input`), which return a
:class:`Video` (sampled RGB frames with their rate) or an :class:`Audio` (mono 16 kHz
samples). Decoding needs the ``media`` extra (PyAV and numpy), imported on first use; WAV audio
is read with the standard library. Limits live in :class:`guardrail.inputs.InputLimits`
(``max_videos``, ``max_video_bytes``, ``max_video_seconds``, ``max_video_source_frames``,
``max_video_frame_pixels``, ``max_video_frames``, ``max_audios``, ``max_audio_bytes``,
``max_audio_seconds``); every problem is a :class:`~guardrail.errors.MediaError` (an
``InputError``). See ``docs/video-audio.md``.
"""

from __future__ import annotations

from guardrail.media.audio import load_audio
from guardrail.media.types import AUDIO_SAMPLE_RATE, Audio, MediaLayout, Video, VideoSampling
from guardrail.media.video import Frames, load_video

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "Audio",
    "Frames",
    "MediaLayout",
    "Video",
    "VideoSampling",
    "load_audio",
    "load_video",
]
