"""GGUF export refuses a model directory that ships its own code (llama.cpp's converter loads
tokenizers with trust_remote_code=True, which would run it) unless trust_remote_code is given.

The hostile directory is a copy of the tiny text guard whose configuration points (``auto_map``)
at a Python file that writes a marker file when imported. The first test shows the file really
runs when transformers is allowed to (what the converter asks for); the others that the export
never lets it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from guardrail import ConfigurationError
from guardrail.export.gguf import custom_code, export_gguf
from tests.conftest import PYTHON, REPO, subprocess_env

pytest.importorskip("transformers", reason="the transformers extra is not installed")

EVIL = """\
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import PreTrainedTokenizerFast as EvilTokenizer  # noqa: E402
from transformers import Qwen2Config as EvilConfig  # noqa: E402
"""
# file -> the auto_map transformers reads in it
AUTO_MAPS = {
    "config.json": {"AutoConfig": "evil.EvilConfig"},
    "tokenizer_config.json": {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]},
    "preprocessor_config.json": {"AutoImageProcessor": "evil.EvilProcessor"},
    "processor_config.json": {"AutoProcessor": "evil.EvilProcessor"},
}


def hostile_copy(tiny_text_path: Path, tmp_path: Path, where: str | None) -> tuple[Path, Path]:
    """A copy of the tiny guard with ``evil.py`` and, when ``where`` names a file, an auto_map
    to it there. Returns (model dir, marker path)."""
    model = tmp_path / "hostile"
    shutil.copytree(tiny_text_path, model, ignore=shutil.ignore_patterns("gguf"))
    marker = tmp_path / "marker"
    (model / "evil.py").write_text(EVIL.format(marker=str(marker)))
    if where is not None:
        path = model / where
        data = json.loads(path.read_text()) if path.is_file() else {}
        data["auto_map"] = AUTO_MAPS[where]
        path.write_text(json.dumps(data))
    return model, marker


def test_the_hostile_directory_runs_code_when_allowed(tiny_text_path, tmp_path):
    model, marker = hostile_copy(tiny_text_path, tmp_path, "tokenizer_config.json")
    code = (
        "from transformers import AutoTokenizer;"
        f"AutoTokenizer.from_pretrained({str(model)!r}, trust_remote_code=True)"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert marker.read_text() == "ran", proc.stderr  # what convert_hf_to_gguf.py would do


@pytest.mark.parametrize("where", [*AUTO_MAPS, None])
def test_export_refuses_custom_code_and_names_the_flag(tiny_text_path, tmp_path, where):
    model, marker = hostile_copy(tiny_text_path, tmp_path, where)
    out = tmp_path / "out"
    with pytest.raises(ConfigurationError, match="--trust-remote-code") as info:
        export_gguf(model, out, quant="f32", assume_pre_tokenizer="qwen2")
    assert "evil.py" in str(info.value)
    if where is not None:
        assert f"{where}: auto_map" in str(info.value)
    assert not marker.exists() and not out.exists()  # refused before anything ran or was written


def test_auto_map_alone_is_found_anywhere_in_a_config(tmp_path):
    assert custom_code(tmp_path) == []
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"auto_map": {"AutoConfig": "x.Y"}}}))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    assert custom_code(tmp_path) == ["config.json: auto_map", "tokenizer_config.json (unreadable)"]


def test_trust_remote_code_lets_the_export_go_on(tiny_text_path, tmp_path):
    """With the flag the check is skipped: the export reaches its next step (here: a bad
    converter path, so nothing runs)."""
    model, marker = hostile_copy(tiny_text_path, tmp_path, "tokenizer_config.json")
    with pytest.raises(ConfigurationError, match="not a llama.cpp checkout"):
        export_gguf(model, tmp_path / "out", trust_remote_code=True, llama_cpp_dir=tmp_path / "none")
    assert not marker.exists()


def test_cli_refuses_with_exit_code_2(tiny_text_path, tmp_path):
    model, marker = hostile_copy(tiny_text_path, tmp_path, "config.json")
    proc = subprocess.run(
        [PYTHON, "-m", "guardrail", "export", "gguf", "--model", str(model), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "ConfigurationError" in proc.stderr
    assert "--trust-remote-code" in proc.stderr and not marker.exists()


def test_the_converter_process_cannot_load_model_code(tiny_text_path, tmp_path):
    """Second line: inside the converter's process (guardrail.export._convert), transformers'
    dynamic-module loader raises even when the converter asks for trust_remote_code=True."""
    model, marker = hostile_copy(tiny_text_path, tmp_path, "tokenizer_config.json")
    code = (
        "from guardrail.export._convert import refuse_remote_code; refuse_remote_code();"
        "from transformers import AutoTokenizer;"
        f"AutoTokenizer.from_pretrained({str(model)!r}, trust_remote_code=True)"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode != 0 and "guardrail refused to run code" in proc.stderr, proc.stderr
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_guard_loading_never_runs_the_directory_code(tiny_text_path, tmp_path, where):
    """The transformers backend (and training, which loads the same way) passes
    trust_remote_code=False: the directory loads with transformers' own classes, or fails, but
    its code never runs."""
    from guardrail import BackendError, Guard

    model, marker = hostile_copy(tiny_text_path, tmp_path, where)
    try:
        Guard.from_pretrained(model, device="cpu").close()
    except BackendError:
        pass
    assert not marker.exists()
