"""Benchmark loaders on the real shared files, small files of each format, malformed files."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from guardrail.errors import ConfigurationError, DatasetError, FormatError
from guardrail.eval.loaders import load_guardreasoner
from guardrail.eval.registry import BENCHMARKS, load_benchmark, resolve_data_dir
from guardrail.profiles import parse_user_text
from tests.conftest import make_image


def label_counts(bench, task="request"):
    return Counter(s.labels[task] for s in bench.samples if task in s.labels)


# Row counts as data/README.md gives them.
GUARDREASONER_ROWS = {
    "SimpleSafetyTests": (100, "request"), "AegisSafetyTest": (359, "request"),
    "OpenAIModeration": (1680, "request"), "HarmBenchPrompt": (239, "request"),
    "HarmBenchResponse": (602, "response"), "XSTestResponseHarmful": (446, "response"),
    "XSTestResponseRefusal": (449, "refusal"), "ToxicChat": (2853, "request"),
    "SafeRLHF": (2000, "response"), "BeaverTails": (3021, "response"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GUARDREASONER_ROWS))
def test_guardreasoner_benchmark_files(shared_data, name):
    rows, task = GUARDREASONER_ROWS[name]
    bench = load_benchmark(name, shared_data)
    assert len(bench) == rows and bench.tasks == (task,) and bench.modality == "text"
    sample = bench.samples[0]
    assert sample.prompt and (sample.response is None) == (task == "request")


def test_guardreasoner_answers_block_and_labels(shared_data):
    safe = load_benchmark("SafeRLHF", shared_data)  # outputs are "Answers:" blocks
    assert label_counts(safe, "response") == {"harmful": 1000, "unharmful": 1000}
    openai = load_benchmark("OpenAIModeration", shared_data)  # missing flags counted as 0 there
    assert label_counts(openai) == {"harmful": 522, "unharmful": 1158}
    # lookup is case-insensitive and knows the predictions folder's typo
    assert load_benchmark("xstestreponseharmful", shared_data).name == "XSTestResponseHarmful"


def test_original_public_formats(shared_data):
    xstest = load_benchmark("xstest", shared_data)
    assert len(xstest) == 450 and label_counts(xstest) == {"unharmful": 250, "harmful": 200}
    completions = load_benchmark("xstest-completions", shared_data)
    assert len(completions) == 450 and completions.tasks == ("request", "refusal")
    assert label_counts(completions, "refusal") == {"compliance": 230, "refusal": 220}  # 211 full + 9 partial
    assert all(s.response for s in completions.samples)
    sst = load_benchmark("sst", shared_data)  # UTF-8 with BOM: the first column is "id", not "\ufeffid"
    assert len(sst) == 100 and sst.samples[0].id == "sst_001" and label_counts(sst) == {"harmful": 100}
    openai = load_benchmark("openai-moderation", shared_data)
    assert label_counts(openai) == {"harmful": 522, "unharmful": 337} and openai.skipped == 821  # 1680 rows
    harmbench = load_benchmark("harmbench", shared_data)
    assert len(harmbench) == 320 and label_counts(harmbench) == {"harmful": 320}
    contextual = [s for s in harmbench.samples if s.meta["category"] == "contextual"]
    assert len(contextual) == 81 and all("\n\n---\n\n" in s.prompt for s in contextual)


def test_image_benchmarks(shared_data):
    figstep = load_benchmark("figstep", shared_data)
    assert len(figstep) == 50 and figstep.modality == "image"
    assert figstep.samples[0].prompt is None and figstep.samples[0].images[0].endswith("_6.png")
    question = load_benchmark("figstep-question", shared_data)
    assert question.modality == "text+image" and question.samples[0].prompt.endswith("?")
    attack = load_benchmark("figstep-attack", shared_data)
    assert "numbered 1, 2, and 3" in attack.samples[0].prompt
    moss = load_benchmark("mossbench", shared_data)
    assert len(moss) == 18 and label_counts(moss) == {"unharmful": 10, "harmful": 8}
    # pairs first: a small slice has both sides of a pair
    assert [s.meta["kind"] for s in moss.samples[:2]] == ["benign", "contrast"]
    assert moss.samples[0].meta["pair"] == moss.samples[1].meta["pair"]


def test_every_registered_benchmark_loads(shared_data):
    # GuardReasoner-Omni's test data (clips included) is not in the shared data: its files are
    # checked with small copies in tests/eval/test_omni.py
    omni = shared_data / "benchmarks" / "guardreasoner-omni"
    for name in BENCHMARKS:
        if name.startswith("omni-") and not omni.is_dir():
            continue
        assert len(load_benchmark(name, shared_data)) > 0, name


def test_data_dir_resolution(shared_data, monkeypatch, tmp_path):
    assert resolve_data_dir(shared_data) == shared_data / "benchmarks"
    assert resolve_data_dir(shared_data / "benchmarks") == shared_data / "benchmarks"
    monkeypatch.setenv("GUARDRAIL_DATA_DIR", str(shared_data))
    assert len(load_benchmark("sst")) == 100
    monkeypatch.setenv("GUARDRAIL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match="GUARDRAIL_DATA_DIR"):
        load_benchmark("sst")
    with pytest.raises(ConfigurationError, match="unknown benchmark"):
        load_benchmark("no-such-benchmark", shared_data)


def test_guardreasoner_inputs_are_read_by_the_profiles_parser():
    assert parse_user_text("Human user:\nhi\n\nAI assistant:\nNone\n\n") == ("hi", None)
    assert parse_user_text("Human user:\na\n\nb\n\nAI assistant:\nok\n\n") == ("a\n\nb", "ok")
    assert parse_user_text("Human user:\nNone\n\nAI assistant:\nok\n\n") == (None, "ok")
    with pytest.raises(FormatError):
        parse_user_text("hello")


def test_the_old_datasets_module_still_works_with_a_deprecation_warning():
    from guardrail.eval import datasets, registry

    with pytest.warns(DeprecationWarning, match="guardrail.eval.registry"):
        assert datasets.BENCHMARKS is registry.BENCHMARKS
    with pytest.warns(DeprecationWarning, match="parse_user_text"):
        assert datasets.split_guardreasoner_input("Human user:\nhi\n\nAI assistant:\nNone\n\n") == (
            "hi",
            None,
        )
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError):
        datasets.split_guardreasoner_input("hello")


# ------------------------------------------------------------------ formats for your own data
def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_user_jsonl(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(make_image())
    path = write_lines(tmp_path / "mine.jsonl", [
        {"id": "q1", "prompt": "How do I bake bread?", "labels": {"request": "unharmful"}},
        {"prompt": "Is this ok?", "images": ["img/a.png"], "labels": {"request": "Harmful"}},
        {"images": ["img/a.png"], "labels": {"request": "harmful"}},
        {"prompt": "q", "response": "I can't help.", "labels": {"response": "unharmful", "refusal": "refusal"}},
    ])  # fmt: skip
    bench = load_benchmark(str(path))
    assert bench.name == "mine" and [s.id for s in bench.samples] == ["q1", "2", "3", "4"]
    assert [s.modality for s in bench.samples] == ["text", "text+image", "image", "text"]
    assert bench.samples[1].labels == {"request": "harmful"} and bench.samples[1].images[0].endswith("a.png")
    assert bench.tasks == ("request", "response", "refusal")
    assert len(load_benchmark(f"jsonl:{path}")) == 4


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": "x", "labels": {"request": "dangerous"}}, "unknown request label 'dangerous'"),
        ({"prompt": "x", "labels": {"toxicity": "harmful"}}, "unknown task 'toxicity'"),
        ({"prompt": "x"}, "no labels: give 'labels'"),
        ({"prompt": "x", "labels": {}}, "no labels: give 'labels'"),
        ({"prompt": "x", "labels": {"request": "harmful"}, "request_label": "unharmful"},
         "labels.request is 'harmful' but request_label is 'unharmful'"),
        ({"labels": {"request": "harmful"}}, "needs a prompt or images"),
        ({"prompt": "x", "images": ["missing.png"], "labels": {"request": "harmful"}}, "image not found"),
        ({"prompt": "x", "labels": {"refusal": "refusal"}}, "need a response"),
        ({"prompt": 3, "labels": {"request": "harmful"}}, "must be a string"),
        ({"prompt": "x", "label": "harmful", "labels": {"request": "harmful"}}, "unknown field"),
    ],
)  # fmt: skip
def test_user_jsonl_errors_name_the_line(tmp_path, record, message):
    path = write_lines(tmp_path / "bad.jsonl", [{"prompt": "fine", "labels": {"request": "harmful"}}, record])
    with pytest.raises(DatasetError, match=message) as info:
        load_benchmark(str(path))
    assert info.value.line == 2 and info.value.path == str(path) and "bad.jsonl:2: " in str(info.value)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "labels": {"request": "harmful"}}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON") as info:
        load_benchmark(str(bad))
    assert info.value.line == 2
    gr = tmp_path / "gr.json"
    gr.write_text(json.dumps([{"instruction": "", "input": "Human user:\nhi\n\nAI assistant:\nNone\n\n",
                               "output": "maybe"}]))  # fmt: skip
    with pytest.raises(DatasetError, match="unknown request label 'maybe'") as info:
        load_benchmark(str(gr))
    assert info.value.line == 1
    gr.write_text(json.dumps([{"input": "no header", "output": "harmful"}]))
    with pytest.raises(DatasetError, match="Human user"):
        load_benchmark(str(gr))
    gr.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DatasetError, match="JSON list"):
        load_benchmark(str(gr))
    with pytest.raises(DatasetError, match="cannot tell the format"):
        load_benchmark(str(bad.rename(tmp_path / "data.txt")))


def test_guardreasoner_task_inference(tmp_path):
    path = tmp_path / "custom.json"
    path.write_text(json.dumps([
        {"instruction": "", "input": "Human user:\nhi\n\nAI assistant:\nNone\n\n", "output": "unharmful"},
        {"instruction": "", "input": "Human user:\nhi\n\nAI assistant:\nno\n\n", "output": "harmful"},
        {"instruction": "", "input": "Human user:\nhi\n\nAI assistant:\nno\n\n", "output": "refusal"},
        {"instruction": "", "input": "Human user:\nhi\n\nAI assistant:\nno\n\n",
         "output": "Answers: \nRequest: harmful\nCompletion: None\nResponse: unharmful\n"},
    ]))  # fmt: skip
    samples = load_guardreasoner(path, "custom").samples
    assert [s.labels for s in samples] == [
        {"request": "unharmful"}, {"response": "harmful"}, {"refusal": "refusal"},
        {"request": "harmful", "response": "unharmful"},
    ]  # fmt: skip


def write_vltest(tmp_path, records):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in ("x.png", "y.png"):
        (tmp_path / "images" / name).write_bytes(make_image())
    path = tmp_path / "HarmImageTest.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def vl_record(user, answer, images):
    return {"messages": [{"role": "system", "content": "You are a classifier..."},
                         {"role": "user", "content": user}, {"role": "assistant", "content": answer}],
            "images": images}  # fmt: skip


def test_vltest_format(tmp_path):
    path = write_vltest(tmp_path, [
        vl_record("Human user:\n<image>\n\nAI assistant:\nNone\n\n",
                  "<think>...</think>\n<result>\nRequest: harmful\nResponse: None\n</result>", ["./images/x.png"]),
        vl_record("Human user:\n<image>\nWhat is this?\n\nAI assistant:\nA cat.\n\n",
                  "<result>\nRequest: unharmful\nResponse: unharmful\n</result>", ["images/y.png"]),
        vl_record("Human user:\nHello\n\nAI assistant:\nNone\n\n", "Request: unharmful\nResponse: None", []),
    ])  # fmt: skip
    bench = load_benchmark(str(path))
    assert bench.name == "HarmImageTest" and bench.modality == "mixed"
    image_only, both, text = bench.samples
    assert (
        image_only.prompt is None
        and image_only.modality == "image"
        and image_only.labels == {"request": "harmful"}
    )
    assert both.prompt == "What is this?" and both.response == "A cat."
    assert both.labels == {"request": "unharmful", "response": "unharmful"}
    assert text.modality == "text" and text.prompt == "Hello"


def test_vltest_errors(tmp_path):
    path = write_vltest(tmp_path, [vl_record("Human user:\n<image>\n\nAI assistant:\nNone\n\n",
                                             "Request: harmful", [])])  # fmt: skip
    with pytest.raises(DatasetError, match="1 <image> placeholder"):
        load_benchmark(f"vltest:{path}")
    path = write_vltest(tmp_path, [vl_record("Human user:\nhi\n\nAI assistant:\nNone\n\n", "no idea", [])])
    with pytest.raises(DatasetError, match="no Request/Response label"):
        load_benchmark(str(path))
    path = write_vltest(
        tmp_path, [vl_record("Human user:\nhi\n\nAI assistant:\nNone\n\n", "Request: bad", [])]
    )
    with pytest.raises(DatasetError, match="unknown request label 'bad'") as info:
        load_benchmark(str(path))
    assert info.value.line == 1
