"""One labelled-sample format for training and evaluation: a training file evaluates as is, what
the training stages write is a benchmark file, an evaluation file trains; benchmarks can be named;
relative image paths work through a symbolic link."""

from __future__ import annotations

import json

import pytest

from guardrail.errors import ConfigurationError
from guardrail.eval.registry import load_benchmark
from guardrail.samples import Sample
from guardrail.training.data import load_examples, write_examples
from tests.conftest import REPO, make_image
from tests.training.conftest import TINY_DATA

TARGET = "<think>\nA lock-picking question.\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"


def _key(s: Sample):
    return (s.id, s.prompt, s.response, tuple(s.images), dict(s.labels))


def test_a_training_file_is_a_benchmark_with_the_same_samples():
    trained = load_examples(TINY_DATA, on_bad_row="fail").examples
    bench = load_benchmark(str(TINY_DATA))  # GuardReasoner-VL rows in a .jsonl: no vltest: prefix
    assert bench.name == "train" and len(bench) == 16
    assert [_key(s) for s in bench.samples] == [_key(s) for s in trained]


def test_the_demo_held_out_file_needs_no_prefix():
    bench = load_benchmark(str(REPO / "examples" / "demo_data" / "heldout.jsonl"))
    assert len(bench) > 0 and all(s.labels.get("request") for s in bench.samples)


def test_rows_written_by_the_training_stages_evaluate_and_eval_rows_train(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "lock.png").write_bytes(make_image())
    row = {"id": "a1", "prompt": "How do I pick this lock?", "images": ["img/lock.png"],
           "labels": {"request": "harmful"}, "target": TARGET}  # fmt: skip
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(row) + "\n")
    # the documented row trains (SFT needs its target) and evaluates
    trained = load_examples(path, require_target=True, on_bad_row="fail").examples
    bench = load_benchmark(str(path))
    assert [_key(s) for s in bench.samples] == [_key(s) for s in trained]
    assert bench.samples[0].target == TARGET == trained[0].target
    # what sample/augment write (Sample.to_row) is that same row
    out = tmp_path / "written" / "hard.jsonl"
    write_examples(out, trained)
    written = json.loads(out.read_text())
    assert written["labels"] == {"request": "harmful"} and "request_label" not in written
    assert _key(load_benchmark(str(out)).samples[0])[1:] == _key(trained[0])[1:]
    # older training rows (request_label ...) still read, in both
    legacy = {
        "id": "b",
        "prompt": "Hi",
        "response": "Hello",
        "request_label": "unharmful",
        "response_label": "unharmful",
    }
    path.write_text(json.dumps(legacy) + "\n")
    assert dict(load_benchmark(str(path)).samples[0].labels) == {
        "request": "unharmful",
        "response": "unharmful",
    }
    assert dict(load_examples(path).examples[0].labels) == {"request": "unharmful", "response": "unharmful"}


def test_benchmarks_with_the_same_file_name_can_be_named(tmp_path):
    from guardrail.eval.run import run_benchmarks
    from guardrail.guard import Guard
    from guardrail.testing import FakeBackend

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "test.jsonl").write_text(
            json.dumps({"prompt": d, "labels": {"request": "harmful"}}) + "\n"
        )
    same = [load_benchmark(str(tmp_path / d / "test.jsonl")) for d in ("a", "b")]
    guard = Guard(FakeBackend())
    with pytest.raises(ConfigurationError, match=r"name them with NAME=PATH"):
        run_benchmarks(guard, same, tmp_path / "out")
    named = [load_benchmark(f"{d}-test=jsonl:{tmp_path / d / 'test.jsonl'}") for d in ("a", "b")]
    assert [b.name for b in named] == ["a-test", "b-test"]
    assert [r.benchmark for r in run_benchmarks(guard, named, tmp_path / "out")] == ["a-test", "b-test"]


def test_relative_image_paths_work_through_a_symlinked_data_file(tmp_path):
    real = tmp_path / "real"
    (real / "img").mkdir(parents=True)
    (real / "img" / "a.png").write_bytes(make_image())
    (real / "d.jsonl").write_text(
        json.dumps({"prompt": "What is it?", "images": ["img/a.png"], "labels": {"request": "unharmful"}})
        + "\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "d.jsonl").symlink_to(real / "d.jsonl")
    assert load_benchmark(str(work / "d.jsonl")).samples[0].images == (str(real / "img" / "a.png"),)
    assert load_examples(work / "d.jsonl", on_bad_row="fail").examples[0].images == (
        str(real / "img" / "a.png"),
    )
