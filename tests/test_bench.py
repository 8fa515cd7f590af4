"""Smoke runs of the speed benchmarks (tiny sizes): the scripts must keep working. They measure
nothing here; their numbers are in docs/performance.md."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def run_script(monkeypatch, capsys):
    import torch

    threads = torch.get_num_threads()

    def run(name: str, *args: str) -> str:
        monkeypatch.setattr(sys, "argv", [name, *args])
        runpy.run_path(str(REPO / "bench" / name), run_name="__main__")
        return capsys.readouterr().out

    yield run
    torch.set_num_threads(threads)


def test_gpu_throughput_script_runs_on_cpu_with_the_tiny_model(run_script):
    out = run_script("gpu_throughput.py", "--tiny", "--device", "cpu", "--dtype", "float32", "--batches", "1", "2",
                     "--new-tokens", "3", "--reps", "1", "--bandwidth-gbs", "20", "--peak-tflops", "0.5")  # fmt: skip
    assert "exactly 3 generated tokens" in out and "floor from 20 GB/s and 0.5 TFLOP/s" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 |", "2 |"))]
    assert len(rows) == 2 and all(line.count("%") == 2 for line in rows)


def test_gpu_throughput_full_size_config_matches_qwen25_vl_3b():
    module = runpy.run_path(str(REPO / "bench" / "gpu_throughput.py"))
    import transformers

    text, vision = module["QWEN25_VL_3B_TEXT"], module["QWEN25_VL_3B_VISION"]
    config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)
    with __import__("torch").device("meta"):
        model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    assert 3.7e9 < total < 3.8e9  # Qwen2.5-VL-3B: 3.75B parameters (embedding tied to the output layer)


def test_cpu_benchmarks_run(run_script):
    out = run_script("fast_mode.py", "--reps", "1", "--new-tokens", "2")
    assert out.count("ratio fast / bare forward") == 2
    out = run_script(
        "microbatch.py", "--requests", "4", "--callers", "1", "4", "--new-tokens", "2", "--rounds", "1"
    )
    assert "reasoning mode" in out and "fast mode" in out and "1 for 4 checks" in out
    out = run_script("cache.py", "--reps", "1", "--new-tokens", "2")
    assert out.count("x\n") == 4


def test_video_scaling_script_runs_on_the_tiny_omni_model(run_script):
    pytest.importorskip("av")
    out = run_script(
        "video_scaling.py", "--seconds", "2", "4", "--pixels", "4", "16", "--mid-seconds", "--reps", "1"
    )
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 4  # 2 clip lengths x 2 pixel budgets
    frames = [int(line.split("|")[4]) for line in rows]
    assert frames == [2, 4, 2, 4]  # 1 fps: a frame per second
    assert "time / (frames ratio)" in out and "time / (pixels ratio)" in out


def test_families_cpu_quick_run_measures_each_family_and_labels_the_estimates(
    run_script, tiny_cache, monkeypatch
):
    from guardrail.profiles import PROFILES

    monkeypatch.setenv("GUARDRAIL_TINY_CACHE", str(tiny_cache))
    out = run_script("families_cpu.py", "--quick", "--threads", "1")
    measured = [
        line
        for line in out.splitlines()
        if line.startswith(("| Llama Guard 3 1B |", "| Qwen3Guard-Gen 0.6B |"))
    ]
    assert len(measured) == 2 and all("| f32 | 1 |" in line for line in measured)
    assert "time llama-guard-3 / qwen3guard: cold" in out
    assert "ESTIMATES (not measured" in out
    for name in ("Llama Guard 4 12B", "gpt-oss-safeguard 20B", "GuardReasoner-VL-Eco 3B"):
        assert sum(line.startswith(f"| {name}") for line in out.splitlines()) == 1, name
    if "shieldgemma-2" in PROFILES:
        assert "| ShieldGemma 2 4B" in out
    else:
        assert "ShieldGemma 2 4B: skipped" in out
