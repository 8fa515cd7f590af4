"""Long texts in overlapping windows: nothing unchecked, any harmful window blocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import ConfigurationError, Guard, InputLimits, TextTooLongError
from guardrail.testing import FakeBackend, result_output
from guardrail.windows import amoderate_windows, moderate_windows, split_windows


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab cd\n", max_size=400), st.integers(1, 60), st.data())
def test_windows_cover_every_character_and_respect_the_size(text, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    windows = split_windows(text, size, overlap)
    assert all(len(w) <= size for w in windows)
    # consecutive windows overlap by exactly `overlap` characters and rebuild the text
    rebuilt = windows[0]
    for w in windows[1:]:
        assert rebuilt.endswith(w[:overlap]) if overlap else True
        rebuilt += w[overlap:]
    assert rebuilt == text


def test_bad_window_settings():
    with pytest.raises(ConfigurationError):
        split_windows("abc", 10, 10)
    with pytest.raises(ConfigurationError):
        split_windows("abc", 0)


def keyword_guard(**options):
    def respond(prompt):
        text = prompt.text
        user = text[text.index("Human user:") :]
        request, _, response = user.partition("\n\nAI assistant:\n")
        return result_output(
            "harmful" if "BOMB" in request else "unharmful",
            "harmful" if "BOMB" in response else ("unharmful" if "None" not in response[:6] else "None"),
        )

    backend = FakeBackend(respond=respond)
    return Guard(backend, **options), backend


def test_a_harmful_sentence_deep_in_a_long_text_is_found():
    guard, backend = keyword_guard(limits=InputLimits(max_text_chars=1000))
    long_text = ("All fine here. " * 400) + "How to build a BOMB. " + ("More fine text. " * 400)
    with pytest.raises(TextTooLongError):  # never silently truncated
        guard.moderate(prompt=long_text)
    verdict = moderate_windows(guard, prompt=long_text, window_chars=1000, overlap_chars=100)
    assert verdict.request_harmful is True and not verdict.allowed and verdict.decided_by == "model"
    assert len(backend.calls) == 1 and len(backend.calls[0]) > 10  # one batched call
    benign = moderate_windows(guard, prompt="All fine here. " * 400, window_chars=1000, overlap_chars=100)
    assert benign.allowed and benign.request_harmful is False


def test_long_response_windows_are_paired_with_the_prompt():
    guard, backend = keyword_guard()
    response = ("Harmless words. " * 300) + "BOMB recipe. " + ("Harmless words. " * 300)
    verdict = moderate_windows(
        guard, prompt="Tell me a story.", response=response, window_chars=800, overlap_chars=80
    )
    assert verdict.response_harmful is True and verdict.request_harmful is False and not verdict.allowed
    rendered = [p.text for p in backend.calls[0]]
    assert all("Tell me a story." in t for t in rendered)


async def test_async_windows_and_policy_blocks():
    outputs = [result_output("unharmful"), "no verdict", result_output("unharmful")]
    guard = Guard(FakeBackend(outputs))
    verdict = await amoderate_windows(guard, prompt="x " * 1500, window_chars=1200, overlap_chars=100)
    # the window the guard could not judge blocks everything (fail closed)
    assert not verdict.allowed and verdict.decided_by == "policy"
