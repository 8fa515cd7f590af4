"""The remote backend against a real third-party OpenAI-compatible server: llama-cpp-python's own
server on 127.0.0.1 serving the tiny GGUF guard with its mmproj. For the same inputs its outputs
(and so its verdicts) equal the in-process llama.cpp backend's.

Two server habits the comparison allows for, both only visible with a random model:
- llama-cpp-python detokenizes with invalid bytes dropped, where our backends show U+FFFD for the
  bytes of a character split by the random model; and it does not count such partial tokens
  towards ``max_tokens``, so its text may run a few tokens past ours. Our text with the U+FFFD
  removed is therefore a prefix of the server's. A trained guard writes whole characters.
- Its default ``repeat_penalty`` is 1.1, which changes greedy decoding: the guard sends
  ``extra_body={"repeat_penalty": 1.0}``, as the llama.cpp server recipe says.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from PIL import Image

from guardrail import Guard
from guardrail.backends.base import GenerationOptions
from guardrail.backends.remote import RemoteCore
from guardrail.inputs import InputLimits, prepare
from guardrail.profiles import GuardReasonerVLProfile
from tests.backends.test_remote import free_port
from tests.conftest import PYTHON, REPO, subprocess_env, wait_until_up

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
np = pytest.importorskip("numpy")

_rs = np.random.RandomState(1)
# Sizes that both the reference processor (28*28 .. 112*112 pixels for the tiny model) and
# llama.cpp's default Qwen2.5-VL bounds (at least 8 image tokens) keep as they are, so the
# server's own image preprocessing cannot differ from ours.
SQUARE = Image.fromarray((_rs.rand(112, 112, 3) * 255).astype(np.uint8))
TALL = Image.fromarray((_rs.rand(112, 84, 3) * 255).astype(np.uint8))
CASES = {
    "text": {"prompt": "How do I bake bread?"},
    "prompt+response": {"prompt": "Say something nice.", "response": "You are great!"},
    "image": {"images": [SQUARE]},
    "text+image": {"prompt": "What is in this picture?", "images": [TALL]},
    "two images+response": {"prompt": "Compare.", "response": "Squares.", "images": [SQUARE, TALL]},
    "unicode": {"prompt": "Wie backe ich Brot? 面包 🍞"},
}
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
SERVER_LOG: dict[str, object] = {}  # the server's log file (the launcher's prefix-reuse lines)
REUSE_LINE = re.compile(r"guardrail prefix reuse: (\d+) prompt tokens reused, (\d+) evaluated")


def test_patched_server_template_renders_the_reference_prompt():
    """What llama-cpp-python's qwen2.5-vl handler renders from the remote backend's messages is
    the profile's reference prompt once the launcher restores the final newline."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    from guardrail.integrations.llamacpp_server import patch_qwen25vl_template

    def render(template: str, item: dict) -> tuple[str, str]:
        prompt = prepare(GuardReasonerVLProfile(), item, InputLimits()).prompt
        body = RemoteCore(model="m").build(prompt, GenerationOptions()).body
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        text = env.from_string(template).render(messages=body["messages"], add_generation_prompt=True)
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part["type"] == "image_url":
                    text = text.replace(part["image_url"]["url"], VISION, 1)
        return text, prompt.text

    stock = Qwen25VLChatHandler.CHAT_FORMAT
    theirs, ours = render(stock, CASES["text"])
    assert theirs + "\n" == ours  # the stock handler drops the newline after the assistant cue
    patch_qwen25vl_template()
    patch_qwen25vl_template()  # idempotent
    try:
        for item in CASES.values():
            theirs, ours = render(Qwen25VLChatHandler.CHAT_FORMAT, item)
            assert theirs == ours
    finally:
        Qwen25VLChatHandler.CHAT_FORMAT = stock


@pytest.fixture(scope="module")
def llama_server(tiny_gguf, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [PYTHON, "-m", "guardrail.integrations.llamacpp_server",
         "--model", str(tiny_gguf.model), "--clip_model_path", str(tiny_gguf.mmproj),
         "--chat_format", "qwen2.5-vl", "--model_alias", "tiny-guard", "--n_ctx", "4096",
         "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    SERVER_LOG["path"] = log_path
    try:
        wait_until_up(base + "/models", proc, log_path)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def local(tiny_gguf):
    backend = Guard.from_gguf(tiny_gguf.model, tiny_gguf.mmproj, n_ctx=4096, n_threads=1).backend
    yield backend
    backend.close()


NEUTRAL = {"repeat_penalty": 1.0}
SAME = {"latency_ms", "model", "output_tokens", "raw_output", "reasoning"}


def same_output(remote_text: str, local_text: str) -> bool:
    return remote_text.startswith(local_text.replace("\ufffd", ""))


def test_remote_verdicts_equal_the_local_llamacpp_backend(llama_server, local):
    remote = Guard.from_endpoint(
        llama_server, "tiny-guard", max_new_tokens=16, timeout=120, extra_body=NEUTRAL
    )
    here = Guard(local, max_new_tokens=16)
    try:
        items = list(CASES.values())
        got = remote.moderate_batch(items)
        want = here.moderate_batch(items)
        for name, g, w in zip(CASES, got, want, strict=True):
            assert same_output(g.raw_output, w.raw_output), (name, g.raw_output, w.raw_output)
            assert len(w.raw_output.replace("\ufffd", "")) >= 8, name  # a real comparison, not ""
            assert g.model_dump(exclude=SAME) == w.model_dump(exclude=SAME), name
        assert all(g.model == "tiny-guard" for g in got)
        # the outputs differ between inputs, so a mix-up would show
        assert len({w.raw_output for w in want}) == len(want)
    finally:
        remote.close()


async def test_remote_async_against_the_server(llama_server, local):
    remote = Guard.from_endpoint(
        llama_server, "tiny-guard", max_new_tokens=8, timeout=120, extra_body=NEUTRAL
    )
    try:
        got = await remote.amoderate(**CASES["text+image"])
        want = Guard(local, max_new_tokens=8).moderate(**CASES["text+image"])
        assert same_output(got.raw_output, want.raw_output)
    finally:
        await remote.aclose()


def _reuse_lines() -> list[tuple[int, int]]:
    text = SERVER_LOG["path"].read_text(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    return [(int(a), int(b)) for a, b in REUSE_LINE.findall(text)]


def test_launcher_keeps_the_instruction_evaluated_between_requests(llama_server, local):
    """The launcher's prefix reuse (on by default): a second request with the same instruction
    evaluates only the tokens after the common prefix, and answers exactly as the in-process
    backend (which evaluates everything here: prefix_cache=False) does. An image request in
    between is evaluated in full and leaves the text before its image reusable."""
    remote = Guard.from_endpoint(
        llama_server, "tiny-guard", max_new_tokens=8, timeout=120, extra_body=NEUTRAL
    )
    here = Guard(local, max_new_tokens=8)
    try:
        items = [{"prompt": "How do I bake bread?"}, {"prompt": "How do I fix a flat bike tyre?"},
                 {"prompt": "How do I fix a flat bike tyre?"}, CASES["text+image"], {"prompt": "Hello there."}]  # fmt: skip
        for item in items:
            before = len(_reuse_lines())
            got = remote.moderate(**item)
            assert same_output(got.raw_output, here.moderate(**item).raw_output), item
            lines = _reuse_lines()
            assert len(lines) == before + 1, lines  # one line per chat request
            reused, evaluated = lines[-1]
            if item is items[0]:
                continue  # whatever the server held before
            if "images" in item:
                assert reused > 0 and evaluated > 8  # the text before the image, then the image's tokens
            elif item is items[2]:
                assert evaluated == 1  # the same prompt: one token is evaluated again for fresh logits
            else:
                assert reused > 20 and evaluated < reused, (reused, evaluated)  # the instruction is reused
    finally:
        remote.close()
