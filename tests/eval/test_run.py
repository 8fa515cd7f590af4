"""End to end with the tiny random models: run every loader's data (images included), resume,
score, report. The tiny models' verdicts are meaningless; these tests check the plumbing."""

from __future__ import annotations

import json

import pytest

from guardrail import Guard
from guardrail.errors import ConfigurationError
from guardrail.eval import load_benchmark, read_predictions, run_benchmarks, score_sets
from guardrail.eval.cli import main
from guardrail.eval.predictions import discover
from guardrail.eval.registry import BENCHMARKS
from tests.conftest import make_image

pytestmark = pytest.mark.slow

# A slice of every loader's data (the GuardReasoner format by two short sets); the refusal sets
# need the GuardReasoner (text) profile. Long-prompt sets are left out: the loader tests read them.
VL_BENCHMARKS = ["SimpleSafetyTests", "XSTestResponseHarmful", "xstest", "sst", "openai-moderation", "harmbench",
                 "figstep", "figstep-question", "mossbench"]  # fmt: skip
TEXT_BENCHMARKS = ["XSTestResponseRefusal", "xstest-completions", "SafeRLHF"]


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def own_data(tmp_path):
    """A user JSONL (one image unreadable) and a GuardReasoner-VLTest file."""
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "ok.png").write_bytes(make_image())
    (data / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    mine = data / "mine.jsonl"
    mine.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "prompt": "What is this?", "images": ["img/ok.png"], "labels": {"request": "unharmful"}},
        {"id": "b", "prompt": "And this?", "images": ["img/broken.png"], "labels": {"request": "harmful"}},
        {"id": "c", "prompt": "Hi", "response": "Hello!", "labels": {"request": "unharmful", "response": "unharmful"}},
    ]))  # fmt: skip
    vltest = data / "vltest.json"
    vltest.write_text(json.dumps([
        {"messages": [{"role": "system", "content": "..."},
                      {"role": "user", "content": "Human user:\n<image>\n\nAI assistant:\nNone\n\n"},
                      {"role": "assistant", "content": "<result>\nRequest: harmful\nResponse: None\n</result>"}],
         "images": ["img/ok.png"]},
    ]))  # fmt: skip
    return mine, vltest


def test_run_every_loader_then_score_and_report(
    tiny_vl_path, tiny_text_path, shared_data, own_data, tmp_path
):
    mine, vltest = own_data
    out_vl, out_text = tmp_path / "vl", tmp_path / "text"
    names = VL_BENCHMARKS
    code = main(["run", "--model", str(tiny_vl_path), "--max-new-tokens", "6", "--benchmarks", *names,
                 str(mine), f"vltest:{vltest}", "--limit", "2", "--batch-size", "4", "--out", str(out_vl),
                 "--data-dir", str(shared_data), "--no-progress"])  # fmt: skip
    assert code == 0
    manifest = json.loads((out_vl / "run.json").read_text())
    assert manifest["model"] == str(tiny_vl_path) and manifest["profile"] == "guardreasoner-vl"
    assert manifest["benchmarks"] == [*names, "mine", "vltest"]
    for name in [*names, "mine", "vltest"]:
        written = rows(out_vl / f"{name}.jsonl")
        assert len(written) == (1 if name == "vltest" else 2), name
        bench = load_benchmark(
            name if name in BENCHMARKS else str(mine if name == "mine" else vltest), shared_data
        )
        for r, sample in zip(written, bench.samples, strict=False):
            assert r["benchmark"] == name and r["id"] == sample.id and r["labels"] == dict(sample.labels)
            assert r["input"]["images"] == list(sample.images) and r["modality"] == sample.modality
            assert set(r["predicted"]) == {"request", "response", "refusal"}
            if r["error"] is None:
                assert (
                    r["output_tokens"] <= 6
                    and r["latency_ms"] > 0
                    and r["verdict"]["profile"] == "guardreasoner-vl"
                )
    assert {r["modality"] for n in ("figstep", "mossbench") for r in rows(out_vl / f"{n}.jsonl")} == {
        "image",
        "text+image",
    }
    broken = rows(out_vl / "mine.jsonl")[1]  # the unreadable image gives an error row, not a crash
    assert (
        broken["id"] == "b"
        and broken["error"].startswith("input error: ImageError")
        and broken["verdict"] is None
    )

    text_names = TEXT_BENCHMARKS
    assert main(["run", "--model", str(tiny_text_path), "--max-new-tokens", "6", "--benchmarks", *text_names,
                 "--limit", "2", "--out", str(out_text), "--data-dir", str(shared_data), "--no-progress"]) == 0  # fmt: skip
    refusal = rows(out_text / "xstest-completions.jsonl")
    assert (
        refusal[0]["labels"].keys() == {"request", "refusal"}
        and refusal[0]["verdict"]["profile"] == "guardreasoner"
    )

    # score: every benchmark and task appears, parse failures are counted, nothing is dropped
    report = score_sets([read_predictions(p) for p in discover(out_vl)], "strict")
    assert report.guard == str(tiny_vl_path)
    assert {r.benchmark for r in report.results} == {*names, "mine", "vltest"}
    mine_scores = report.get("mine", "request")
    assert mine_scores.n == 2 and mine_scores.errors == 1 and mine_scores.parse_failures >= 1
    assert report.average("request", "all").weight == sum(r.n for r in report.results if r.task == "request")
    assert report.average("request", "text").weight < report.average("request", "all").weight
    gr = score_sets([read_predictions(p) for p in discover(out_text)], "guardreasoner")
    assert {(r.benchmark, r.task) for r in gr.results} == {
        ("XSTestResponseRefusal", "refusal"), ("xstest-completions", "request"),
        ("xstest-completions", "refusal"), ("SafeRLHF", "response")}  # fmt: skip

    md, js, png = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "r.png"
    assert main(["report", "--predictions", str(out_vl), str(out_text), "--names", "vl", "text",
                 "--out", str(md), str(js), str(png)]) == 0  # fmt: skip
    text = md.read_text()
    assert (
        "## F1 side by side" in text and "| vl F1 | text F1 |" in text and "| mossbench | request |" in text
    )
    assert [g["guard"] for g in json.loads(js.read_text())["guards"]] == ["vl", "text"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert (
        main(["score", "--predictions", str(out_vl), "--out", str(tmp_path / "r.txt")]) == 2
    )  # unknown format


def test_resume_skips_done_rows_and_repairs_a_cut_short_line(vl_backend, shared_data, tmp_path, monkeypatch):
    guard = Guard(vl_backend, max_new_tokens=4)
    benches = [load_benchmark("sst", shared_data), load_benchmark("mossbench", shared_data)]
    run_benchmarks(guard, benches, tmp_path, batch_size=2, limit=3)
    sst = tmp_path / "sst.jsonl"
    first = sst.read_text(encoding="utf-8").splitlines(keepends=True)
    assert [json.loads(x)["id"] for x in first] == ["sst_001", "sst_002", "sst_003"]
    sst.write_text("".join(first[:2]) + first[2][:40], encoding="utf-8")  # killed while writing row 3

    prompts = []
    original = vl_backend.generate

    def counting(batch, options):
        prompts.extend(batch)
        return original(batch, options)

    monkeypatch.setattr(vl_backend, "generate", counting)
    results = run_benchmarks(guard, benches, tmp_path, batch_size=2, limit=4)
    assert [(r.written, r.skipped) for r in results] == [(2, 2), (1, 3)]
    assert len(prompts) == 3  # only the missing samples reached the model
    after = sst.read_text(encoding="utf-8").splitlines(keepends=True)
    assert after[:2] == first[:2] and [json.loads(x)["id"] for x in after] == [
        "sst_001",
        "sst_002",
        "sst_003",
        "sst_004",
    ]
    prompts.clear()
    assert [r.written for r in run_benchmarks(guard, benches, tmp_path, limit=4)] == [0, 0] and not prompts

    # a broken line in the middle is not ours to rewrite
    sst.write_text(after[0] + "{oops\n" + "".join(after[1:]), encoding="utf-8")
    with pytest.raises(Exception, match="sst.jsonl:2: malformed line"):
        run_benchmarks(guard, benches[:1], tmp_path, limit=5)


def test_run_refuses_what_the_profile_cannot_do(vl_backend, text_backend, shared_data, tmp_path):
    with pytest.raises(
        ConfigurationError, match="refusal, which profile 'guardreasoner-vl' does not predict"
    ):
        run_benchmarks(Guard(vl_backend), [load_benchmark("XSTestResponseRefusal", shared_data)], tmp_path)
    with pytest.raises(ConfigurationError, match="has images; profile 'guardreasoner' is text-only"):
        run_benchmarks(Guard(text_backend), [load_benchmark("figstep", shared_data)], tmp_path)
    run_benchmarks(
        Guard(vl_backend, max_new_tokens=2), [load_benchmark("sst", shared_data)], tmp_path, limit=1
    )
    with pytest.raises(ConfigurationError, match="holds predictions of model .*guardreasoner-vl"):
        run_benchmarks(
            Guard(text_backend, max_new_tokens=2), [load_benchmark("sst", shared_data)], tmp_path, limit=1
        )
    sst = load_benchmark("sst", shared_data)
    with pytest.raises(ConfigurationError, match="same predictions file: sst"):
        run_benchmarks(Guard(vl_backend), [sst, sst], tmp_path / "other")
    assert main(["run", "--model", "unused", "--benchmarks", "no-such", "--out", str(tmp_path),
                 "--data-dir", str(shared_data)]) == 2  # fmt: skip
