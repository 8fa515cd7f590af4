"""The verdict cache: hits and misses, TTL, LRU bound, and a key that changes with every input
that decides a verdict."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from guardrail import BackendError, ConfigurationError, Guard, VerdictCache
from guardrail.cache import guard_fingerprint, request_key
from guardrail.profiles import GuardReasonerVLProfile, ModerationInput
from guardrail.testing import FakeBackend, result_output
from tests.conftest import make_image


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hit_and_miss():
    backend = FakeBackend([result_output("harmful")])
    guard = Guard(backend, cache=True)
    first = guard.moderate(prompt="same")
    second = guard.moderate(prompt="same")
    assert len(backend.calls) == 1 and not first.cached and second.cached
    assert second.model_dump(exclude={"cached", "latency_ms"}) == first.model_dump(
        exclude={"cached", "latency_ms"}
    )
    guard.moderate(prompt="different")
    assert len(backend.calls) == 2
    assert guard.stats.get("cache_hits") == 1 and guard.stats.get("cache_misses") == 2
    # a batch: hits are served, only the misses reach the backend, order kept
    verdicts = guard.moderate_batch([{"prompt": "same"}, {"prompt": "new"}, {"prompt": "different"}])
    assert [v.cached for v in verdicts] == [True, False, True] and len(backend.calls[-1]) == 1


def test_no_cache_by_default():
    backend = FakeBackend()
    guard = Guard(backend)
    guard.moderate(prompt="x")
    guard.moderate(prompt="x")
    assert guard.cache is None and len(backend.calls) == 2 and guard.stats.get("cache_misses") == 0


def test_policy_verdicts_are_not_cached():
    backend = FakeBackend([BackendError("flaky"), result_output("unharmful")])
    guard = Guard(backend, cache=True)
    assert guard.moderate(prompt="x").decided_by == "policy"
    assert guard.moderate(prompt="x").decided_by == "model"  # retried, not served from the cache
    assert guard.moderate(prompt="x").cached


def test_ttl_expiry():
    clock = Clock()
    backend = FakeBackend()
    guard = Guard(backend, cache=VerdictCache(ttl_s=10, clock=clock))
    guard.moderate(prompt="x")
    clock.now = 9.9
    assert guard.moderate(prompt="x").cached
    clock.now = 10.0  # ten seconds after it was stored: gone
    assert not guard.moderate(prompt="x").cached and len(backend.calls) == 2
    assert guard.cache.expirations == 1


def test_lru_bound():
    cache = VerdictCache(max_size=2)
    guard = Guard(FakeBackend(), cache=cache)
    for p in ("a", "b"):
        guard.moderate(prompt=p)
    guard.moderate(prompt="a")  # a is now the most recently used
    guard.moderate(prompt="c")  # evicts b
    assert len(cache) == 2 and cache.evictions == 1
    assert guard.moderate(prompt="a").cached and guard.moderate(prompt="c").cached
    assert not guard.moderate(prompt="b").cached
    with pytest.raises(ConfigurationError):
        VerdictCache(max_size=0)
    with pytest.raises(ConfigurationError):
        VerdictCache(ttl_s=0)


def key(item: ModerationInput, mode: str = "reasoning", **settings) -> str:
    base = {
        "backend": "fake",
        "model": "m",
        "max_new_tokens": 100,
        "threshold": 0.5,
        "cascade_band": [0.2, 0.8],
    }
    return request_key(guard_fingerprint({**base, **settings}, GuardReasonerVLProfile()), item, mode)


def test_key_changes_with_every_deciding_input():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    one_pixel = red.copy()
    one_pixel.putpixel((3, 3), (254, 0, 0))
    base = ModerationInput(prompt="hi", response="ok", images=(red,))
    variants = [
        ModerationInput(prompt="hi!", response="ok", images=(red,)),
        ModerationInput(prompt="hi", response="ok!", images=(red,)),
        ModerationInput(prompt="hi", response=None, images=(red,)),
        ModerationInput(prompt="hi", response="", images=(red,)),
        ModerationInput(prompt="hi", response="ok", images=(blue,)),
        ModerationInput(prompt="hi", response="ok", images=(one_pixel,)),
        ModerationInput(prompt="hi", response="ok", images=(red, red)),
        ModerationInput(prompt="hi", response="ok", images=()),
        ModerationInput(prompt="hiok", response="", images=(red,)),  # no ambiguity at boundaries
    ]
    keys = {key(base)} | {key(v) for v in variants}
    assert len(keys) == len(variants) + 1
    for change in ({"model": "other"}, {"threshold": 0.6}, {"max_new_tokens": 5}, {"cascade_band": [0.1, 0.9]},
                   {"backend": "remote"}):  # fmt: skip
        assert key(base, **change) != key(base)
    assert key(base, "fast") != key(base) and key(base, "cascade") != key(base, "fast")
    other_profile = guard_fingerprint({}, GuardReasonerVLProfile(fast_prefix="<result>\nRequest:"))
    assert other_profile != guard_fingerprint({}, GuardReasonerVLProfile())
    assert key(ModerationInput(prompt="hi", response="ok", images=(red.copy(),))) == key(base)  # same pixels


def test_same_pixels_share_an_entry_whatever_the_encoding(tmp_path):
    png = make_image()
    path = tmp_path / "img.png"
    path.write_bytes(png)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    backend = FakeBackend()
    guard = Guard(backend, cache=True)
    hits = [guard.moderate(prompt="what?", images=[src]).cached for src in (png, str(path), url,
                                                                             Image.open(io.BytesIO(png)))]  # fmt: skip
    assert hits == [False, True, True, True] and len(backend.calls) == 1
    other = make_image(color=(200, 30, 31))
    assert not guard.moderate(prompt="what?", images=[other]).cached


def test_mode_and_guard_settings_are_part_of_the_key():
    backend = FakeBackend([result_output("unharmful")], scores=[0.9])
    cache = VerdictCache()
    guard = Guard(backend, cache=cache)
    assert guard.moderate(prompt="x").path == "reasoning"
    assert guard.moderate(prompt="x", mode="fast").path == "fast"  # not the reasoning verdict
    assert guard.moderate(prompt="x", mode="fast").cached
    guard.threshold = 0.95  # changing a setting after construction changes the key too
    assert not guard.moderate(prompt="x", mode="fast").cached
    shared = Guard(FakeBackend([result_output("unharmful")], model_name="other-guard"), cache=cache)
    assert not shared.moderate(prompt="x").cached  # one cache, two models: no mix-up


async def test_async_path_uses_the_cache():
    backend = FakeBackend()
    guard = Guard(backend, cache=True)
    await guard.amoderate(prompt="x", images=[make_image()])
    again = await asyncio.gather(*(guard.amoderate(prompt="x", images=[make_image()]) for _ in range(3)))
    assert all(v.cached for v in again) and len(backend.calls) == 1
