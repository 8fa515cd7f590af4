"""A verdict cache: the same request to the same guard gets the same verdict without a model call.

Off by default; turn it on with ``Guard(..., cache=True)`` or ``cache=VerdictCache(...)``.

The key is a hash of everything that decides a verdict:

- the request: prompt and response texts (``None`` and ``""`` differ) and each image's decoded
  pixels (mode, size and bytes): what the model sees, so the same picture sent as PNG bytes, a
  file or a data URL shares one entry, and any changed pixel makes a new one; each video's
  sampled frames and rate and each audio clip's decoded samples, likewise;
- the guard: the backend's :attr:`~guardrail.backends.base.Backend.cache_identity` (its class
  and what decides its outputs: the model files and loader options, or the endpoint URL, served
  model, request mode and a keyed digest of credentials and extra request fields; a backend
  that cannot describe itself, such as a wrapped in-memory model or a scripted fake, is known
  only as its own instance), backend and model name, profile name and every profile option
  (system prompt, fast prefix, stop strings...), ``max_new_tokens``, the mode, the threshold and
  the cascade band, and the library version.

Only verdicts decided by the model are stored: a verdict decided by the failure policy (a
backend error, an unparsable output) is never cached, so a transient failure is retried on the
next call. The cache is bounded (least recently used entries go first) and entries expire
``ttl_s`` seconds after they were stored. A cached verdict comes back with ``cached=True`` and
the latency of the call that found it. One cache may be shared by several guards: each gets
only the verdicts of its own backend (two endpoints serving the same model name never mix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.profiles.base import ModerationInput
from guardrail.verdict import Verdict

__all__ = ["VerdictCache", "guard_fingerprint", "request_key"]


class VerdictCache:
    """A thread-safe LRU cache of verdicts with a time to live.

    - ``max_size``: entries kept; the least recently used go first.
    - ``ttl_s``: seconds an entry stays valid after it was stored (``None``: no expiry).
    - ``clock``: the time source (``time.monotonic``; tests pass their own).
    """

    def __init__(self, max_size: int = 10_000, ttl_s: float | None = 3600.0, *,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigurationError(f"max_size must be an integer >= 1; got {max_size!r}")
        if ttl_s is not None and ttl_s <= 0:
            raise ConfigurationError(f"ttl_s must be > 0 or None; got {ttl_s!r}")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Verdict]] = OrderedDict()
        self.evictions = 0
        self.expirations = 0

    def get(self, key: str) -> Verdict | None:
        """The verdict stored under ``key`` if present and not expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored, verdict = entry
            if self.ttl_s is not None and self._clock() - stored >= self.ttl_s:
                del self._entries[key]
                self.expirations += 1
                return None
            self._entries.move_to_end(key)
            return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __repr__(self) -> str:
        return f"VerdictCache(size={len(self)}, max_size={self.max_size}, ttl_s={self.ttl_s})"


def guard_fingerprint(settings: Mapping[str, Any], profile: Any) -> str:
    """A hash of the guard settings that decide verdicts (``settings``) and the profile's
    name and options."""
    from guardrail import __version__

    options = dataclasses.asdict(profile) if dataclasses.is_dataclass(profile) else repr(profile)
    blob = json.dumps(
        {"settings": dict(settings), "profile": getattr(profile, "name", None), "options": options,
         "version": __version__},
        sort_keys=True, default=repr,
    )  # fmt: skip
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()


def request_key(fingerprint: str, item: ModerationInput, mode: str) -> str:
    """The cache key of one request checked in ``mode`` by the guard with ``fingerprint``."""
    h = hashlib.blake2b(digest_size=20)
    for part in (fingerprint, mode):
        h.update(part.encode("utf-8") + b"\0")
    for text in (item.prompt, item.response):
        if text is None:
            h.update(b"N\0")
        else:
            data = text.encode("utf-8", "surrogatepass")
            h.update(b"T" + str(len(data)).encode() + b":" + data)
    # what else changes the prompt or the decision: the policy (actions included), the turns
    # of a conversation and whether only its response is judged
    policy = getattr(item, "policy", None)
    h.update(b"P" + (policy.key().encode() if policy is not None else b"-") + b"\0")
    turns = getattr(item, "conversation", None)
    if turns is not None:
        h.update(b"C" + json.dumps([[t.role, t.text, list(t.images)] for t in turns]).encode() + b"\0")
    h.update(b"R1" if getattr(item, "response_only", False) else b"R0")
    h.update(f"I{len(item.images)}".encode())
    for image in item.images:
        pixels = image.tobytes()
        h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:{len(pixels)}:".encode())
        h.update(pixels)
    # videos and audio clips: what the model is given (sampled frames, 16 kHz samples)
    for tag, clips in (("V", getattr(item, "videos", ())), ("A", getattr(item, "audios", ()))):
        if clips:
            h.update(f"{tag}{len(clips)}:".encode() + ",".join(c.digest() for c in clips).encode())
    return h.hexdigest()
