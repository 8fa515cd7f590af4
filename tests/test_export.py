"""GGUF export with llama.cpp's own converter and llama-cpp-python's quantiser, on the tiny guards."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from importlib import metadata

import pytest
from PIL import Image

from guardrail import ConfigurationError, ExportError, Guard
from tests.conftest import PYTHON, REPO, subprocess_env

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")

RED = Image.new("RGB", (64, 48), (220, 20, 20))


def gguf_meta(path, prefix=""):
    from guardrail.export.gguf import read_gguf_metadata

    return read_gguf_metadata(path, prefix)


def run(*args: str, module: str = "guardrail") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", module, *args],
        capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=600,
    )  # fmt: skip


def test_tiny_export_writes_the_model_and_its_mmproj(tiny_gguf):
    assert tiny_gguf.model.name == "tiny-guardreasoner-vl-f32.gguf"
    assert tiny_gguf.mmproj.name == "mmproj-tiny-guardreasoner-vl-f32.gguf"
    model = gguf_meta(tiny_gguf.model)
    assert model["general.architecture"] == "qwen2vl" and model["general.file_type"] == 0
    assert model["tokenizer.ggml.pre"] == "qwen2"  # declared for the home-made tokenizer
    assert model["qwen2vl.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    proj = gguf_meta(tiny_gguf.mmproj, "clip.")
    assert proj["clip.projector_type"] == "qwen2.5vl_merger"
    # the image processor's bounds travel with the mmproj (the tiny processor: 1 to 16 tokens)
    assert proj["clip.vision.image_min_pixels"] == 784 and proj["clip.vision.image_max_pixels"] == 12544


@pytest.mark.parametrize(("quant", "ftype"), [("q8_0", 7), ("q4_k_m", 15)])
def test_quantised_files_load_and_generate(tiny_gguf, tmp_path, quant, ftype):
    from guardrail.export.gguf import quantize_gguf

    out = quantize_gguf(tiny_gguf.model, tmp_path / f"tiny-{quant}.gguf", quant, threads=2)
    assert gguf_meta(out)["general.file_type"] == ftype
    assert out.stat().st_size < tiny_gguf.model.stat().st_size / 2
    guard = Guard.from_gguf(out, tiny_gguf.mmproj, n_ctx=2048, max_new_tokens=6)
    try:
        verdict = guard.moderate(prompt="What is in this picture?", images=[RED])
        assert verdict.output_tokens and "backend error" not in (verdict.error or "")
    finally:
        guard.close()


def test_cli_export_of_a_vision_guard(tiny_vl_path, tmp_path):
    out = tmp_path / "out"
    proc = run("export", "gguf", "--model", str(tiny_vl_path), "--out", str(out), "--quant", "q4_k_m",
               "--assume-pre-tokenizer", "qwen2", "--name", "guard", "--threads", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    model, mmproj = out / "guard-q4_k_m.gguf", out / "mmproj-guard-f16.gguf"
    assert f"model:  {model}" in proc.stdout and f"mmproj: {mmproj}" in proc.stdout
    assert gguf_meta(model)["general.file_type"] == 15
    assert gguf_meta(mmproj)["general.file_type"] == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([mmproj.name, model.name])  # no leftovers
    guard = Guard.from_gguf(out, n_ctx=2048, max_new_tokens=6)  # the directory: both files found
    try:
        assert guard.backend.mmproj == str(mmproj)
        assert guard.moderate(prompt="What is this?", images=[RED]).output_tokens
    finally:
        guard.close()


def test_testing_cli_writes_the_gguf_pair(tmp_path):
    proc = run("tiny-model", str(tmp_path / "tiny"), "--gguf", module="guardrail.testing")
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (tmp_path / "tiny" / "gguf").glob("*.gguf"))
    assert files == ["mmproj-tiny-guardreasoner-vl-f32.gguf", "tiny-guardreasoner-vl-f32.gguf"]


def test_unknown_tokenizer_is_an_export_error_with_a_hint(tiny_text_path, tmp_path):
    """A tokenizer the converter does not know, whose split regex is not one llama.cpp knows
    either: nothing to detect, so the converter's error comes with the hint."""
    import shutil

    from guardrail.export.gguf import detect_pre_tokenizer, export_gguf

    model = tmp_path / "odd"
    shutil.copytree(tiny_text_path, model)
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}+|\s+|."
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert detect_pre_tokenizer(model) is None and detect_pre_tokenizer(tiny_text_path) == "qwen2"
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="assume-pre-tokenizer") as info:
        export_gguf(model, out, quant="f32")
    assert "pre-tokenizer was not recognized" in str(info.value)  # the converter's own words
    assert not list(out.glob("*.gguf"))


def test_a_trained_tiny_guard_exports_without_flags_and_says_what_it_costs(sft_guard_dir, tmp_path):
    """As met: a guard trained by the recipe from the tiny base (runs/NAME/rl). The pre-tokenizer
    is detected from its own tokenizer, the files are named after the run, and the output says
    what q4_k_m's fallback and quantisation mean for quality."""
    out = tmp_path / "gguf"
    proc = run("export", "gguf", "--model", str(sft_guard_dir), "--out", str(out), "--quant", "q4_k_m",
               "--threads", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tokenizer split regex: qwen2" in proc.stderr
    assert (
        "note: " in proc.stderr
        and "could not take q4_k_m" in proc.stderr
        and "keep more precision" in proc.stderr
    )
    model, mmproj = out / "demo-q4_k_m.gguf", out / "mmproj-demo-f16.gguf"  # runs/demo/rl -> demo
    assert f"model:  {model}" in proc.stdout and f"mmproj: {mmproj}" in proc.stdout
    assert "caveat: q4_k_m: smallest and fastest; measurable quality loss" in proc.stdout
    assert "f32 12/12, q8_0 9/12, q4_k_m 7/12" in proc.stdout
    assert gguf_meta(model)["tokenizer.ggml.pre"] == "qwen2"
    guard = Guard.from_gguf(out, n_ctx=2048, max_new_tokens=6)
    try:
        assert guard.moderate(prompt="What is this?", images=[RED]).output_tokens
    finally:
        guard.close()


@pytest.fixture
def sft_guard_dir(tiny_vl_path, tmp_path):
    """A guard trained by the recipe layout: runs/demo/rl (two SFT steps suffice for the export)."""
    from guardrail.training import SFTConfig, train_sft
    from tests.training.conftest import HANDFUL, tiny_rows, write_rows

    data = write_rows(tmp_path / "d.jsonl", tiny_rows(HANDFUL))
    out = tmp_path / "runs" / "demo" / "rl"
    train_sft(SFTConfig(model=str(tiny_vl_path), data=[str(data)], output_dir=str(out), max_steps=2,
                        per_device_train_batch_size=2, bf16=False, disable_tqdm=True, num_threads=1))  # fmt: skip
    return out


def test_bad_arguments_give_clear_errors(tiny_text_path, tmp_path):
    from guardrail.export.gguf import export_gguf, quantize_gguf

    with pytest.raises(ConfigurationError, match="not a directory"):
        export_gguf(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigurationError, match="no config.json"):
        export_gguf(tmp_path, tmp_path / "out")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="no weights"):
        export_gguf(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigurationError, match="unknown quantisation"):
        export_gguf(tiny_text_path, tmp_path / "out", quant="q3_weird")
    with pytest.raises(ConfigurationError, match="no vision tower"):
        export_gguf(tiny_text_path, tmp_path / "out", mmproj=True)
    with pytest.raises(ConfigurationError, match="not a llama.cpp checkout"):
        export_gguf(tiny_text_path, tmp_path / "out", llama_cpp_dir=tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        export_gguf(tiny_text_path, tmp_path / "afile")
    with pytest.raises(ConfigurationError, match="no GGUF file"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "q.gguf", "q8_0")
    with pytest.raises(ExportError, match="llama_model_quantize failed"):
        quantize_gguf(tmp_path / "afile", tmp_path / "q.gguf", "q8_0")


def test_cli_bad_model_exits_2(tmp_path):
    proc = run("export", "gguf", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "error: ConfigurationError" in proc.stderr and "not a directory" in proc.stderr


def test_converter_source_is_the_installed_llama_cpp_python_sdist(tiny_gguf, monkeypatch):
    from guardrail.export.gguf import LLAMA_CPP_ENV, converter_source

    monkeypatch.delenv(LLAMA_CPP_ENV, raising=False)
    root = converter_source()  # cached by the tiny_gguf build: no download here
    marker = json.loads((root / ".guardrail-complete").read_text())
    assert marker["llama-cpp-python"] == metadata.version("llama-cpp-python")
    assert len(marker["sha256"]) == 64
    assert sorted(p.name for p in root.iterdir()) == [
        ".guardrail-complete", "LICENSE", "conversion", "convert_hf_to_gguf.py", "gguf-py",
    ]  # fmt: skip


def test_extraction_writes_only_the_converter_files(tmp_path):
    from guardrail.export.gguf import _extract_converter

    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:

        def add(name: str, data: bytes = b"x", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)

        root = "llama_cpp_python-9.9.9/vendor/llama.cpp/"
        add(root + "convert_hf_to_gguf.py", b"print('converter')")
        add(root + "gguf-py/gguf/__init__.py")
        add(root + "gguf-py/../../../escape.py")
        add(root + "conversion/link.py", type=tarfile.SYMTYPE, linkname="/etc/passwd", size=0)
        add(root + "src/llama.cpp")
        add("llama_cpp_python-9.9.9/llama_cpp/llama.py")
    dest = tmp_path / "dest"
    assert len(_extract_converter(sdist, dest)) == 64
    written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert written == ["convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert not (tmp_path / "escape.py").exists()


def test_vision_pixel_bounds_come_from_the_processor_config(tmp_path):
    from guardrail.export.gguf import _vision_pixel_bounds

    assert _vision_pixel_bounds(tmp_path) is None
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"min_pixels": 3136, "max_pixels": 12845056})
    )
    assert _vision_pixel_bounds(tmp_path) == (3136, 12845056)  # Qwen2.5-VL-*-Instruct
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"image_processor": {"size": {"shortest_edge": 784, "longest_edge": 12544}}})
    )
    assert _vision_pixel_bounds(tmp_path) == (3136, 12845056)  # explicit min/max_pixels win
    (tmp_path / "preprocessor_config.json").unlink()
    assert _vision_pixel_bounds(tmp_path) == (784, 12544)  # transformers 5's layout
