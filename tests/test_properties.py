"""Property-based tests (hypothesis) of the parsers and the input normaliser.

The contract: whatever the input, they either succeed or raise one of the documented errors, and
labels only ever take values from the allowed set.
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from guardrail.errors import ImageError, InputError
from guardrail.inputs import InputLimits, load_image, normalize_input
from guardrail.profiles import GuardReasonerProfile, GuardReasonerVLProfile, ModerationInput
from guardrail.profiles.base import TASK_LABELS

VL = GuardReasonerVLProfile()
GR = GuardReasonerProfile()
ITEMS = [
    ModerationInput(prompt="q"),
    ModerationInput(prompt="q", response="r"),
    ModerationInput(response="r"),
]

# Text built from fragments the parsers look for, so random strings hit the interesting paths.
FRAGMENTS = [
    "<think>", "</think>", "<result>", "</result>", "Request:", "Response:", "Completion:", "Answers:",
    "# Answers", "harmful", "unharmful", "none", "None", "harmless", "refusal", "compliance", "\n", " ",
    "---", "REQUEST: HARMFUL", "<|im_end|>", "maybe",
]  # fmt: skip
outputs = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=40).map("".join)
ALLOWED = {task: set(labels) for task, labels in TASK_LABELS.items()}


def check_parsed(profile, parsed, item):
    for task, label in parsed.labels.items():
        assert task in profile.tasks
        assert label is None or label in ALLOWED[task], (task, label)
    if parsed.ok:
        assert all(parsed.labels[t] is not None for t in profile.required_tasks(item))
        assert parsed.error is None
    else:
        assert parsed.error


@settings(max_examples=400, deadline=None)
@given(outputs, st.sampled_from(ITEMS))
def test_vl_parser_total_and_closed(output, item):
    check_parsed(VL, VL.parse(output, item), item)


@settings(max_examples=400, deadline=None)
@given(outputs, st.sampled_from(ITEMS))
def test_guardreasoner_parser_total_and_closed(output, item):
    check_parsed(GR, GR.parse(output, item), item)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=200),
    st.sampled_from(["harmful", "unharmful"]),
    st.sampled_from(["harmful", "unharmful"]),
)
def test_vl_result_block_always_wins_over_reasoning(noise, real, fake):
    """Whatever the reasoning says (even a forged result block inside it), the final result
    block decides."""
    out = f"<think>{noise} Request: {fake} <result>Request: {fake}</result> {noise}</think>\n<result>\nRequest: {real}\nResponse: None\n</result>"
    parsed = VL.parse(out, ModerationInput(prompt="q"))
    assert parsed.ok and parsed.labels["request"] == real


texts = st.one_of(
    st.none(),
    st.text(max_size=50),
    st.binary(max_size=30),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)
images = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.text(max_size=40),
    st.just("data:image/png;base64,"),
    st.text(max_size=20).map(lambda s: "data:image/png;base64," + s),
    st.lists(st.binary(max_size=16), max_size=3),
    st.integers(),
    st.dictionaries(st.text(max_size=3), st.text(max_size=5), max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts, texts, images)
def test_normaliser_raises_only_input_errors(prompt, response, image):
    try:
        item = normalize_input(prompt, response, image, limits=InputLimits(max_images=2))
    except InputError:
        return
    assert item.prompt is None or isinstance(item.prompt, str)
    assert item.response is None or isinstance(item.response, str)
    assert all(img.mode == "RGB" for img in item.images)
    assert item.has_request or item.has_response


def _encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    img = Image.new(mode, size)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "CMYK"]),
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.sampled_from(["PNG", "TIFF", "GIF", "BMP", "WEBP", "JPEG"]),
    st.integers(0, 200),
    st.binary(max_size=8),
)
def test_any_real_or_mangled_image_gives_rgb_or_image_error(mode, size, fmt, cut, junk):
    try:
        data = _encoded(mode, size, fmt)
    except (OSError, ValueError, KeyError):
        return  # that format cannot store that mode: nothing to test
    for candidate in (data, data[:cut], data[:cut] + junk, junk + data):
        try:
            img = load_image(candidate)
        except ImageError:
            continue
        assert img.mode == "RGB" and img.size[0] > 0 and img.size[1] > 0
