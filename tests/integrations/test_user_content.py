"""Hostile inputs to ``@guard.check``: every argument that carries user content is checked, and
no user string is ever opened as a local file (the LangChain twins are in test_langchain.py)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from guardrail import ConfigurationError, GuardViolation, ImageError, InputError, InputLimits
from tests.integrations.conftest import BAD_REQUEST, NO_PATHS, KeywordGuard, data_url, opened, path_sources


# ------------------------------------------------------------------------------ decorator
def test_decorator_never_opens_an_image_path(kw, png_file, monkeypatch):
    reads = opened(monkeypatch)
    ran = []

    @kw.guard.check
    def describe(prompt: str, image=None) -> str:
        ran.append(image)
        return "A photo."

    @kw.guard.check
    def chat(messages: list) -> str:
        ran.append(messages)
        return "A photo."

    for source in path_sources(png_file):
        with pytest.raises(ImageError) as info:
            describe("what is this?", image=source)
        assert str(info.value) == NO_PATHS  # the same whether the file exists or not
        for part in (
            {"type": "image_url", "image_url": {"url": str(source)}},
            {"type": "image_url", "image_url": str(source)},
            {"type": "image", "url": str(source)},
            {"type": "image", "source_type": "url", "url": str(source)},
        ):
            with pytest.raises(ImageError, match=NO_PATHS):
                chat([{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}])
    assert ran == [] and reads == [] and kw.checks == []
    # data URLs still work
    assert describe("what is this?", image=data_url()) == "A photo." and kw.checks[-1][2] == 1


def test_decorator_paths_are_an_explicit_opt_in(kw, png_file):
    @kw.guard.check(allow_paths=True)
    def trusted(prompt: str, images: list) -> str:
        return "Two photos."

    assert trusted("compare", images=[str(png_file), png_file]) == "Two photos."
    assert kw.checks[-1][2] == 2
    # a guard whose own limits forbid paths wins over the decorator's opt-in
    strict = KeywordGuard(limits=InputLimits(allow_paths=False))
    with pytest.raises(ImageError, match=NO_PATHS):
        strict.guard.check(allow_paths=True)(lambda prompt, image: "x")("hi", image=str(png_file))
    with pytest.raises(ConfigurationError):
        kw.guard.check(allow_paths="yes")
    # the plain Python API takes paths: there the caller is the app
    assert kw.guard.moderate(prompt="x", images=[str(png_file)]).allowed


async def test_decorator_async_and_stream_refuse_paths(kw, png_file):
    @kw.guard.check
    async def answer(prompt: str, image) -> str:
        raise AssertionError("never runs")

    @kw.guard.check(input=False)
    async def stream(prompt: str, images):
        yield "never"

    with pytest.raises(ImageError, match=NO_PATHS):
        await answer("hi", str(png_file))
    with pytest.raises(ImageError, match=NO_PATHS):
        [c async for c in stream("hi", [str(png_file)])]


def test_decorator_checks_every_request_argument(kw):
    seen = []

    @kw.guard.check
    def handler(prompt: str, messages: list, question: str = "") -> str:
        seen.append(prompt)
        return "ok"

    with pytest.raises(GuardViolation):
        handler("hello", [{"role": "user", "content": f"build a {BAD_REQUEST}"}])
    with pytest.raises(GuardViolation):
        handler("hello", [{"role": "system", "content": "be kind"}], question=f"a {BAD_REQUEST}?")
    assert handler("hello", [{"role": "assistant", "content": "hi"}]) == "ok" and seen == ["hello"]
    assert "hello" in kw.checks[-2][0]

    @kw.guard.check
    def from_kwargs(**kwargs) -> str:
        return "ok"

    with pytest.raises(GuardViolation):
        from_kwargs(prompt="hello", query=f"a {BAD_REQUEST}")

    @kw.guard.check
    def from_body(body) -> str:
        return "ok"

    body = {"prompt": "hello", "messages": [{"role": "user", "content": BAD_REQUEST}]}
    with pytest.raises(GuardViolation):
        from_body(body)
    from_body({"prompt": "two pictures", "image": data_url(), "images": [data_url((0, 0, 255))]})
    assert kw.checks[-1][2] == 2  # images from both fields
    with pytest.raises(InputError, match="no user turn"):
        from_body({"prompt": None, "messages": [{"role": "system", "content": "s"}]})


def test_decorator_images_at_the_pixel_limit_are_checked_once_decoded():
    """A transparent image hiding content becomes one two-panel picture; it must still fit the
    guard's pixel limit when the decorator hands the decoded picture on."""
    img = Image.new("RGBA", (1000, 1000), (0, 0, 0, 0))
    img.paste((255, 0, 0, 0), (100, 100, 900, 900))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    kw = KeywordGuard(limits=InputLimits(max_image_pixels=1_000_000))

    @kw.guard.check
    def describe(prompt: str, image) -> str:
        return "A picture."

    assert describe("what is this?", image=url) == "A picture." and kw.checks[-1][2] == 1
