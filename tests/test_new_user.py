"""Issue 16, items 5, 6 and 9, as a new user met them: loading a mistyped directory, the CLI's
`check` (errors under --json, long reasoning, the token cap), the weight-loading progress bar,
and a verdict whose reasoning contradicts its result."""

from __future__ import annotations

import json
import subprocess

import pytest

from guardrail import BackendError, Guard
from guardrail.cli import REASONING_LINES, format_verdict
from guardrail.profiles.consistency import conclusions
from guardrail.testing import FakeBackend, result_output
from guardrail.verdict import Verdict
from tests.conftest import PYTHON, subprocess_env


def run(*args: str, cwd, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "guardrail", *args],
        capture_output=True, text=True, env=subprocess_env(HF_HUB_OFFLINE="1"), cwd=cwd, timeout=timeout,
    )  # fmt: skip


# ------------------------------------------------------------------------ item 5: loading
@pytest.mark.slow
def test_mistyped_model_directories_say_what_was_looked_for(tmp_path):
    (tmp_path / "runs" / "rl").mkdir(parents=True)
    (tmp_path / "runs" / "rl" / "notes.txt").write_text("x")
    cases = {
        "runs/rll": f"there is no directory {tmp_path}/runs/rll; did you mean {tmp_path}/runs/rl?",
        "./nonexistent": f"there is no directory {tmp_path}/nonexistent",
        "runs/rl": f"the directory {tmp_path}/runs/rl has no config.json",
        "tiny-gaurd": f"no local directory {tmp_path}/tiny-gaurd, and from the hub:",
    }
    for name, expected in cases.items():
        proc = run("check", "--model", name, "--prompt", "hi", cwd=tmp_path)
        assert proc.returncode == 2 and expected in proc.stderr, (name, proc.stderr)
        assert "Repo id must be" not in proc.stderr


def test_from_pretrained_names_the_directory(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(BackendError, match="there is no directory .*models/tiny-gaurd") as info:
        Guard.from_pretrained("models/tiny-gaurd")
    assert "huggingface" not in str(info.value).lower()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(BackendError, match="Guard.from_gguf"):
        Guard.from_pretrained(tmp_path / "models")


# ---------------------------------------------------------------------------- item 6: CLI
@pytest.mark.slow
def test_check_json_errors_are_json(tmp_path):
    proc = run("check", "--model", "./missing-model", "--prompt", "hi", "--json", cwd=tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "BackendError" and "there is no directory" in error["message"]
    proc = run("check", "--model", "./missing-model", "--json", cwd=tmp_path)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["type"] == "InputError"
    proc = run("check", "--model", "./missing-model", "--prompt", "hi", cwd=tmp_path)  # no --json
    assert proc.returncode == 2 and proc.stdout == "" and "error: BackendError" in proc.stderr


@pytest.mark.slow
def test_check_says_when_the_token_cap_was_hit(tiny_vl_path, tmp_path):
    # the random tiny guard never closes its answer: every check runs into the cap
    proc = run(
        "check", "--model", str(tiny_vl_path), "--prompt", "hi", "--max-new-tokens", "12", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert "note: the guard model stopped at the cap of 12 new tokens" in proc.stdout
    assert "--max-new-tokens" in proc.stdout and "Loading weights" not in proc.stderr
    proc = run(
        "check", "--model", str(tiny_vl_path), "--prompt", "hi", "--max-new-tokens", "12", "--progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert "Loading weights" in proc.stderr  # shown on request


def test_long_reasoning_is_cut_in_human_output_only():
    reasoning = "\n".join(f"step {i}: " + "thinking " * 20 for i in range(200))
    verdict = Verdict(harmful=True, allowed=False, parsed=False, reasoning=reasoning, output_tokens=4096)
    short = format_verdict(verdict, full_reasoning=False, max_new_tokens=4096)
    assert len(short) < 4000 and "more characters of reasoning: --full-reasoning or --json" in short
    assert short.count("\n  step") <= REASONING_LINES and "note: the guard model stopped" in short
    full = format_verdict(verdict, full_reasoning=True)
    assert reasoning.splitlines()[-1] in full
    assert json.loads(verdict.model_dump_json())["reasoning"] == reasoning


# --------------------------------------------------------------- item 9: contradictions
def test_a_contradicting_reasoning_is_recorded_and_counted():
    said_unharmful = "The request asks how to bake bread. The request is unharmful."
    outputs = [
        result_output("harmful", "unharmful", reasoning=said_unharmful),
        result_output("unharmful", "unharmful", reasoning=said_unharmful),
    ]
    guard = Guard(FakeBackend(outputs=outputs))
    first = guard.moderate(prompt="how do I bake bread?")
    assert first.blocked and first.request_harmful  # the result decides
    assert first.contradiction == "the reasoning concludes the request is unharmful; the result says harmful"
    second = guard.moderate(prompt="how do I bake bread, again?")
    assert second.allowed and second.contradiction is None
    assert guard.stats.get("contradictions") == 1
    assert "note: the reasoning concludes the request is unharmful" in format_verdict(first)


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        ("The user's request doesn't seem harmful. The AI assistant's response is harmful.",
         {"request": "unharmful", "response": "harmful"}),
        ("The request could be harmful. On reflection the request is harmless.", {"request": "unharmful"}),
        ("The request is harmful but the response is not harmful.", {}),  # two subjects: no reading
        ("Nothing here says either way.", {}),
    ],
)  # fmt: skip
def test_reasoning_conclusions(reasoning, expected):
    assert conclusions(reasoning) == expected


# ------------------------------------------------------------------ item 8: the demo data
@pytest.mark.slow
def test_eval_reads_the_shipped_heldout_file_without_a_prefix(tmp_path):
    from tests.conftest import REPO

    heldout = REPO / "examples" / "demo_data" / "heldout.jsonl"
    proc = subprocess.run(
        [PYTHON, "-m", "guardrail.eval", "run", "--benchmarks", str(heldout), "--model", "./no-model",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=subprocess_env(HF_HUB_OFFLINE="1"), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    # the benchmark loads (before the model): the failure is the missing model, said plainly
    assert proc.returncode == 2 and "there is no directory" in proc.stderr, proc.stderr
    assert "labels" not in proc.stderr
