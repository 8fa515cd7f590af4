"""Shared fixtures. Nothing here downloads anything: tiny models are built offline."""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """Public benchmark data lives beside the checkout (../shared/data); CI may point elsewhere."""
    if os.environ.get("GUARDRAIL_SHARED_DATA"):
        return Path(os.environ["GUARDRAIL_SHARED_DATA"])
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running `python -m guardrail...` from this checkout in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


PYTHON = sys.executable


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set GUARDRAIL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    root = os.environ.get("GUARDRAIL_TINY_CACHE")
    return Path(root) if root else tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_vl_path(tiny_cache) -> Path:
    from guardrail.testing import cached_tiny_model

    return cached_tiny_model("guardreasoner-vl", tiny_cache)


@pytest.fixture(scope="session")
def tiny_text_path(tiny_cache) -> Path:
    from guardrail.testing import cached_tiny_model

    return cached_tiny_model("guardreasoner", tiny_cache)


@pytest.fixture(scope="session", autouse=True)
def _close_llama_cpp_devnull():
    """llama-cpp-python opens two /dev/null files at import and never closes them; close them at
    the end of the session so the interpreter's exit does not report them as leaked."""
    yield
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


@pytest.fixture(scope="session")
def tiny_gguf(tiny_vl_path):
    """The tiny VL guard as f32 GGUF files (``.model``, ``.mmproj``), for llama.cpp.

    The first build fetches llama.cpp's converter (llama-cpp-python's source distribution, once
    per machine, cached in ~/.cache/guardrail; or set GUARDRAIL_LLAMA_CPP_DIR to a checkout).
    """
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.testing import cached_tiny_gguf

    return cached_tiny_gguf("guardreasoner-vl", tiny_vl_path.parent)


@pytest.fixture(scope="session")
def tiny_text_gguf(tiny_text_path):
    """The tiny text (Llama) guard as an f32 GGUF file (``.model``; ``.mmproj`` is None)."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.testing import cached_tiny_gguf

    return cached_tiny_gguf("guardreasoner", tiny_text_path.parent)


@pytest.fixture(scope="session")
def vl_backend(tiny_vl_path):
    from guardrail import Guard

    return Guard.from_pretrained(tiny_vl_path, device="cpu").backend


@pytest.fixture(scope="session")
def text_backend(tiny_text_path):
    from guardrail import Guard

    return Guard.from_pretrained(tiny_text_path, device="cpu").backend


def wait_until_up(url: str, proc, log_path: Path, *, timeout: float = 120.0) -> None:
    """Wait until ``GET url`` answers 200 from the server process ``proc`` (its output in
    ``log_path``), failing with the log when the process dies or the time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, Path(log_path).read_text()[-3000:]
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout}s"
        time.sleep(0.2)


def make_image(size=(64, 48), color=(200, 30, 30), fmt="PNG", mode="RGB") -> bytes:
    from PIL import Image

    img = Image.new(mode, size, color)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def png_bytes() -> bytes:
    return make_image()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (invalid) body: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + chunk(b"IEND", b"")
    )


def assert_threads_match_sequential(guard, cases: dict, names: list[str], n_threads: int) -> None:
    """``n_threads`` threads moderating ``names`` round-robin get the sequential raw outputs."""
    expected = {n: guard.moderate(**cases[n]).raw_output for n in names}
    got: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            got[i] = guard.moderate(**cases[names[i % len(names)]]).raw_output
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(got[i] == expected[names[i % len(names)]] for i in range(n_threads))
