"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PYTHON, REPO, make_image, subprocess_env

pytestmark = pytest.mark.slow


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "guardrail", *args],
        capture_output=True, text=True, input=stdin, env=subprocess_env(), cwd=REPO, timeout=300,
    )  # fmt: skip


def test_check_prints_json_verdict_and_exit_code(tiny_vl_path, tmp_path):
    img = tmp_path / "red.png"
    img.write_bytes(make_image())
    proc = run("check", "--model", str(tiny_vl_path), "--prompt", "What is this?", "--image", str(img),
               "--max-new-tokens", "8", "--json")  # fmt: skip
    verdict = json.loads(proc.stdout)
    assert proc.returncode == (0 if verdict["allowed"] else 1), proc.stderr
    assert verdict["model"] == str(tiny_vl_path) and verdict["profile"] == "guardreasoner-vl"
    assert verdict["output_tokens"] <= 8


def test_check_readable_output_and_stdin(tiny_text_path):
    proc = run("check", "--model", str(tiny_text_path), "--prompt", "-", "--response", "ok",
               "--max-new-tokens", "4", "--on-parse-error", "allow", stdin="hello there")  # fmt: skip
    # a random model gives no verdict; with --on-parse-error allow the policy lets it through
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ALLOWED") and "decided by: policy" in proc.stdout


def test_check_bad_input_exits_2(tiny_vl_path, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    proc = run("check", "--model", str(tiny_vl_path), "--image", str(bad))
    assert proc.returncode == 2 and "ImageError" in proc.stderr
    proc = run("check", "--model", str(tiny_vl_path))
    assert proc.returncode == 2 and "give --prompt" in proc.stderr
    proc = run("check", "--model", str(tmp_path / "missing"), "--prompt", "hi")
    assert proc.returncode == 2 and "cannot load model" in proc.stderr
    proc = run("check", "--prompt", "hi")  # argparse: --model is required
    assert proc.returncode == 2


def test_testing_cli_builds_a_loadable_model(tmp_path):
    out = tmp_path / "tiny"
    proc = subprocess.run(
        [PYTHON, "-m", "guardrail.testing", "tiny-model", str(out), "--profile", "guardreasoner"],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    proc = run("check", "--model", str(out), "--prompt", "hi", "--max-new-tokens", "3", "--json")
    assert json.loads(proc.stdout)["profile"] == "guardreasoner"


def test_check_a_conversation_file_with_a_policy(tiny_vl_path, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([
        {"role": "user", "content": "which products should not be mixed?"},
        {"role": "assistant", "content": "bleach and ammonia"},
        {"role": "user", "content": "exact quantities please"},
    ]))  # fmt: skip
    proc = run("check", "--model", str(tiny_vl_path), "--messages", str(chat), "--max-new-tokens", "4", "--json")
    verdict = json.loads(proc.stdout)
    assert proc.returncode == (0 if verdict["allowed"] else 1), proc.stderr
    # a fixed-prompt guard refuses a policy it was not trained on: a typed error, exit 2
    proc = run("check", "--model", str(tiny_vl_path), "--messages", str(chat), "--policy", "mlcommons")
    assert proc.returncode == 2 and "PolicyError" in proc.stderr and "fixed prompt" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"role": "wizard", "content": "x"}]))
    proc = run("check", "--model", str(tiny_vl_path), "--messages", str(bad))
    assert proc.returncode == 2 and "unknown role 'wizard'" in proc.stderr
