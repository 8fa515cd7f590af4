"""Checking data before training: the validate command, its summary, and contradictions."""

from __future__ import annotations

import json

import pytest

from guardrail.errors import DataError
from guardrail.training.cli import main
from guardrail.training.data import load_examples
from tests.training.conftest import TINY_DATA, TINY_RECIPE, tiny_rows, write_rows


def answer(request, response="None"):
    return f"<think>\nx\n</think>\n<result>\nRequest: {request}\nResponse: {response}\n</result>"


def rows_with_problems():
    rows = tiny_rows(("tiny-00", "tiny-01", "tiny-07"))
    rows.append({"id": "no-image", "prompt": "What is this?", "images": ["gone.png"],
                 "request_label": "unharmful", "target": answer("unharmful")})  # fmt: skip
    rows.append({"id": "no-target", "prompt": "Hi", "request_label": "unharmful"})
    return rows


def test_a_target_contradicting_its_labels_is_an_error_even_when_bad_rows_are_skipped(tmp_path):
    rows = [
        {"id": "ok", "prompt": "Bake bread?", "request_label": "unharmful", "target": answer("unharmful")},
        {"id": "x", "prompt": "Make a bomb?", "request_label": "unharmful", "target": answer("harmful")},
        {"id": "y", "prompt": "Hi", "response": "A recipe for poison.", "request_label": "unharmful",
         "response_label": "unharmful", "target": answer("unharmful", "harmful")},
    ]  # fmt: skip
    sharegpt = json.loads(TINY_DATA.read_text().splitlines()[0])
    sharegpt.update(id="sg", images=[], request_label="harmful")  # its target says unharmful
    path = write_rows(tmp_path / "d.jsonl", [*rows, sharegpt])
    for on_bad_row in ("skip", "fail"):
        with pytest.raises(DataError) as info:
            load_examples(path, on_bad_row=on_bad_row)
        message = str(info.value)
        assert "3 row(s) whose target contradicts their labels" in message
        assert (
            "d.jsonl:2: contradiction: the target says 'Request: harmful' but request_label is 'unharmful'"
            in message
        )
        assert "d.jsonl:3: contradiction: the target says 'Response: harmful'" in message
        assert "d.jsonl:4: contradiction" in message
    # agreeing labels (any spelling of them) are fine
    write_rows(path, [{**rows[0], "request_label": " Unharmful"}])
    assert len(load_examples(path, on_bad_row="fail").examples) == 1


def test_validate_prints_a_summary_and_says_what_would_be_dropped(tmp_path, capsys):
    path = write_rows(tmp_path / "d.jsonl", rows_with_problems())
    assert main(["validate", "--data", str(path), "--stages", "sft"]) == 1
    out = capsys.readouterr().out
    assert f"sft data: {path} (profile guardreasoner-vl, targets required)" in out
    assert "rows 5, usable samples 3, dropped 2" in out
    assert "request: harmful 2 (66.7%), unharmful 1 (33.3%)" in out
    assert "modality: text 3" in out and "1 missing" in out
    assert "dropped: image missing 1, target missing or malformed 1" in out
    assert "d.jsonl:4: image file not found" in out and "d.jsonl:5: no assistant target text" in out
    assert "some rows would be dropped" in out
    # the shipped tiny corpus is clean, for both stages that read it
    assert main(["validate", "--config", str(TINY_RECIPE), "--model", "x"]) == 0
    out = capsys.readouterr().out
    assert "sft data:" in out and "sample data:" in out and out.rstrip().endswith("data OK")
    assert "modality: text 10, image 2, text+image 4" in out


def test_run_checks_the_data_before_any_stage(tmp_path, capsys):
    """A contradiction (or any bad row under on_bad_row: fail) stops `run` before a model loads."""
    good = rows_with_problems()[:3]
    bad = [
        *good,
        {"id": "x", "prompt": "Make a bomb?", "request_label": "unharmful", "target": answer("harmful")},
    ]
    path = write_rows(tmp_path / "d.jsonl", bad)
    out = tmp_path / "out"
    argv = ["run", "--model", str(tmp_path / "no-such-model"), "--data", str(path), "--output_dir", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "DataError" in err and "contradicts their labels" in err and "d.jsonl:4" in err
    assert not out.exists()
    write_rows(path, rows_with_problems())
    assert main([*argv, "--on_bad_row", "fail"]) == 2
    err = capsys.readouterr().err
    assert "sft: 2 bad row(s) and on_bad_row is fail" in err and "cannot load" not in err
    assert main(["validate", "--data", str(path), "--on_bad_row", "fail", "--stages", "sft"]) == 2
