"""Rejection sampling: exact selection with a scripted backend, then once with the tiny model."""

from __future__ import annotations

import json

import pytest

from guardrail.backends.base import Backend, Generation
from guardrail.errors import ConfigurationError
from guardrail.testing import FakeBackend, result_output
from guardrail.training import RejectionConfig, rejection_sample
from guardrail.training.data import load_examples
from tests.training.conftest import write_rows

K = 4
RIGHT = result_output("harmful", "None")
WRONG = result_output("unharmful", "None")
GARBAGE = "I cannot decide."

# sample prompt -> its 4 scripted answers; gold: request harmful, no response (unless noted)
SCRIPT = {
    "always wrong": [WRONG] * 4,  # kept
    "three wrong": [WRONG, WRONG, RIGHT, WRONG],  # kept only with any_wrong
    "unparsable": [GARBAGE] * 4,  # parse failures count as wrong: kept
    "always right": [RIGHT] * 4,  # never kept
    "response wrong": [result_output("harmful", "unharmful")] * 4,  # gold response harmful: kept
    "one error": [WRONG, WRONG, "<error>", WRONG],  # a backend failure: not kept, counted
}
GOLD_RESPONSE = {"response wrong": ("It is easy.", "harmful")}


class ScriptedBackend(FakeBackend):
    """Answers by the sample's prompt text, in order; '<error>' fails that one answer."""

    def __init__(self):
        self.seen: dict[str, int] = {}
        self.options = []
        super().__init__(respond=self._answer)

    def _answer(self, prompt):
        name = next(n for n in SCRIPT if f"\n{n}\n" in prompt.text or f":\n{n}\n" in prompt.text)
        i = self.seen.get(name, 0)
        self.seen[name] = i + 1
        out = SCRIPT[name][i % K]
        return RuntimeError("backend hiccup") if out == "<error>" else out

    def generate(self, prompts, options):
        self.options.append(options)
        return super().generate(prompts, options)


@pytest.fixture
def data_file(tmp_path):
    rows = []
    for name in SCRIPT:
        response, label = GOLD_RESPONSE.get(name, (None, None))
        rows.append(
            {
                "id": name.replace(" ", "-"),
                "prompt": name,
                "response": response,
                "request_label": "harmful",
                "response_label": label,
            }
        )
    return write_rows(tmp_path / "data.jsonl", rows)


def config(data_file, out, **kw):
    return RejectionConfig(
        data=[str(data_file)], output_dir=str(out), k=K, batch_size=4, disable_tqdm=True, **kw
    )


def test_keeps_exactly_the_samples_wrong_k_times_out_of_k(data_file, tmp_path):
    backend = ScriptedBackend()
    result = rejection_sample(config(data_file, tmp_path / "out"), backend=backend)
    kept = load_examples(result.hard_file, on_bad_row="fail").examples
    assert [e.id for e in kept] == ["always-wrong", "unparsable", "response-wrong"]
    assert [e.meta["wrong"] for e in kept] == [4, 4, 4]
    s = result.stats
    assert (s.samples, s.k, s.generations, s.kept, s.topped_up) == (6, 4, 24, 3, 0)
    assert (s.parse_failures, s.errors) == (4, 1)
    # answers that came back: 23; wrong request labels: 4 + 3 + 4 + 0 + 0 + 3 = 14
    assert s.error_rate == {"request": round(14 / 23, 6), "response": 1.0, "any": round(18 / 23, 6)}
    assert s.wrong_histogram == {"0": 1, "1": 0, "2": 0, "3": 2, "4": 3}
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["kept"] == 3
    # sampling settings reach the backend: paper defaults, one seed per batch
    opts = backend.options
    assert {(o.temperature, o.top_p, o.max_new_tokens) for o in opts} == {(1.0, 0.95, 1024)}
    assert [o.seed for o in opts] == [42, 46]
    assert sum(len(c) for c in backend.calls) == 24


def test_any_wrong_and_min_keep(data_file, tmp_path):
    any_wrong = rejection_sample(
        config(data_file, tmp_path / "a", keep="any_wrong"), backend=ScriptedBackend()
    )
    assert [e.id for e in any_wrong.kept] == ["always-wrong", "three-wrong", "unparsable", "response-wrong"]
    topped = rejection_sample(config(data_file, tmp_path / "b", min_keep=5), backend=ScriptedBackend())
    # 3 qualify; the most-often-wrong others fill up (never the one whose answer failed)
    assert [e.id for e in topped.kept] == [
        "always-wrong",
        "three-wrong",
        "unparsable",
        "always-right",
        "response-wrong",
    ]
    assert topped.stats.topped_up == 2


def test_an_interrupted_run_continues_where_it_stopped(data_file, tmp_path):
    class DiesOnSecondBatch(ScriptedBackend):
        def generate(self, prompts, options):
            if self.calls:
                raise KeyboardInterrupt
            return super().generate(prompts, options)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        rejection_sample(config(data_file, out), backend=DiesOnSecondBatch())
    assert len((out / "progress.jsonl").read_text().splitlines()) == 4
    backend = ScriptedBackend()
    result = rejection_sample(config(data_file, out), backend=backend)
    assert sum(len(c) for c in backend.calls) == 2 * K  # only the last two samples
    assert result.stats.samples == 6 and result.stats.kept == 3
    # resume: false starts over
    backend = ScriptedBackend()
    rejection_sample(config(data_file, out, resume=False), backend=backend)
    assert sum(len(c) for c in backend.calls) == 6 * K


def test_a_failing_backend_call_stops_the_run(data_file, tmp_path):
    from guardrail.errors import BackendError

    with pytest.raises(BackendError):
        rejection_sample(config(data_file, tmp_path / "o"), backend=FakeBackend(error=BackendError("down")))


def test_config_checks():
    for bad, match in [
        ({"k": 0}, "k"),
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"keep": "some"}, "keep"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            RejectionConfig(**bad)
    with pytest.raises(ConfigurationError, match="model"):
        rejection_sample(RejectionConfig(data=["x.jsonl"], output_dir="o"))
    assert issubclass(ScriptedBackend, Backend) and Generation  # the scripted backend is a real Backend


@pytest.mark.slow
def test_with_the_tiny_model(sft_model, handful_file, tmp_path):
    """The transformers backend by name: k sampled answers per sample, judged as Guard parses."""
    out = tmp_path / "tiny"
    cfg = RejectionConfig(
        model=str(sft_model),
        data=[str(handful_file)],
        output_dir=str(out),
        k=3,
        temperature=1.0,
        max_new_tokens=64,
        batch_size=6,
        backend_options={"device": "cpu"},
        keep="any_wrong",
        disable_tqdm=True,
    )
    result = rejection_sample(cfg)
    records = {r["id"]: r for r in map(json.loads, (out / "progress.jsonl").read_text().splitlines())}
    assert len(records) == 6 and all(r["k"] == 3 and len(r["tokens"]) == 3 for r in records.values())
    assert [e.id for e in result.kept] == [i for i, r in records.items() if r["wrong"] > 0]
    s = result.stats
    assert s.generations == 18 and s.errors == 0 and 0 < s.mean_output_tokens <= 64
    assert sum(s.wrong_histogram.values()) == 6
    assert s.error_rate["any"] == pytest.approx(sum(r["wrong"] for r in records.values()) / 18, abs=1e-6)
