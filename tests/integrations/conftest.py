"""Helpers for the integration tests: a scripted guard with exact, inspectable decisions."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest

from guardrail import Guard
from guardrail.testing import FakeBackend, result_output
from tests.conftest import make_image

BAD_REQUEST = "bomb"  # a request containing this word is harmful
BAD_RESPONSE = "poison"  # a response containing this word is harmful


class KeywordGuard:
    """A FakeBackend whose verdicts follow two keywords, and a log of what it was asked.

    ``checks`` holds, for every prompt the backend received, the (request part, response part,
    number of images) it saw; ``log`` is shared with tests that interleave other events.
    """

    def __init__(self, log: list | None = None, **guard_options):
        self.checks: list[tuple[str, str, int]] = []
        self.log = log if log is not None else []
        self._lock = threading.Lock()
        self.backend = FakeBackend(respond=self._respond)
        self.guard = Guard(self.backend, **guard_options)

    def _respond(self, prompt) -> str:
        # the response follows "\n\nAI assistant:\n" (quoted context lines read "AI assistant: ...")
        human, _, ai = prompt.text.partition("\n\nAI assistant:\n")
        human = human.split("Human user:", 1)[-1]
        with self._lock:
            self.checks.append((human, ai, len(prompt.images)))
            self.log.append(("check", ai))
        return result_output(
            "harmful" if BAD_REQUEST in human else "unharmful",
            "harmful" if BAD_RESPONSE in ai else "unharmful",
        )

    @property
    def batches(self) -> int:
        """How many backend calls (batched guard calls) were made."""
        return len(self.backend.calls)


@pytest.fixture
def kw() -> KeywordGuard:
    return KeywordGuard()


def data_url(color=(200, 30, 30)) -> str:
    return "data:image/png;base64," + base64.b64encode(make_image(color=color)).decode()


def b64_png(color=(30, 200, 30)) -> str:
    return base64.b64encode(make_image(color=color)).decode()


NO_PATHS = "image 0: local file paths are not accepted here"


@pytest.fixture
def png_file(tmp_path) -> Path:
    path = tmp_path / "picture.png"
    path.write_bytes(make_image())
    return path


def path_sources(png_file: Path) -> list:
    """Image sources that name files: an existing PNG, a missing file, a device, a directory."""
    return [str(png_file), png_file, str(png_file.parent / "missing.png"), "/dev/zero", ".", "/etc/passwd"]


def opened(monkeypatch) -> list[str]:
    """Records every path guardrail.inputs tries to read (it must stay empty)."""
    import guardrail.inputs as inputs

    calls: list[str] = []
    real = inputs._read_file

    def spy(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "_read_file", spy)
    return calls
