"""Data loaders: every row is validated; bad rows are reported with their row number."""

from __future__ import annotations

import json

import pytest

from guardrail.errors import DataError
from guardrail.profiles import (
    GUARDREASONER_INSTRUCTION,
    GUARDREASONER_VL_INSTRUCTION,
    GuardReasonerVLProfile,
    parse_user_text,
)
from guardrail.samples import Sample
from guardrail.training.data import load_examples, write_examples
from tests.conftest import make_image
from tests.training.conftest import TINY_DATA

_VL = GuardReasonerVLProfile()

TARGET = "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"


def sharegpt(user: str, target: str = TARGET, images=(), **extra) -> dict:
    return {
        "messages": [
            {"role": "system", "content": GUARDREASONER_VL_INSTRUCTION},
            {"role": "user", "content": user},
            {"role": "assistant", "content": target},
        ],
        "images": list(images),
        **extra,
    }


def write_jsonl(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.fixture
def image_dir(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(make_image())
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return tmp_path


def test_the_tiny_corpus_loads_cleanly():
    data = load_examples(TINY_DATA, require_target=True, on_bad_row="fail")
    assert data.rows == len(data.examples) == 16 and data.skipped == 0
    kinds = {(e.prompt is not None, bool(e.images), e.response is not None) for e in data.examples}
    assert kinds == {
        (True, False, False),
        (True, False, True),
        (False, True, False),
        (True, True, False),
        (True, True, True),
    }
    for ex in data.examples:
        assert all(p.startswith(str(TINY_DATA.parent)) for p in ex.images)


def test_sharegpt_rows_are_split_into_prompt_response_and_images(image_dir):
    path = write_jsonl(
        image_dir / "d.jsonl",
        [
            sharegpt(
                "Human user:\n<image>\nWhat is this?\n\nAI assistant:\nNone\n\n", images=["./img/a.png"]
            ),
            sharegpt(
                "Human user:\n<image>\n\nAI assistant:\nNone\n\n", images=["img/a.png"], id="only-image"
            ),
            sharegpt(
                "Human user:\nHi\n\nAI assistant:\nHello!\n\n",
                target="<think>\nok\n</think>\n<result>\nRequest: unharmful\nResponse: harmful\n</result>",
            ),
            {
                "conversations": [
                    {"from": "human", "value": "Human user:\nHi\n\nAI assistant:\nNone\n\n"},
                    {"from": "gpt", "value": TARGET},
                ]
            },
        ],
    )
    data = load_examples(path, on_bad_row="fail", require_target=True)
    a, b, c, d = data.examples
    assert (a.prompt, a.response, a.request_label, a.response_label) == (
        "What is this?",
        None,
        "unharmful",
        None,
    )
    assert (
        a.images == (str(image_dir / "img" / "a.png"),) and a.id == "d-1" and a.source.endswith("d.jsonl:1")
    )
    assert (b.prompt, b.id) == (None, "only-image")
    assert (c.prompt, c.response, c.response_label) == ("Hi", "Hello!", "harmful")
    assert (d.prompt, d.response) == ("Hi", None)


def test_guardreasoner_rows_are_converted_for_the_vl_profile(tmp_path):
    output = "# Task 1\n\n## Reasoning Step 1\nIt asks for a bomb.\n\n---\n\nAnswers: \nRequest: harmful\nCompletion: refusal\nResponse: unharmful\n"
    row = {
        "instruction": GUARDREASONER_INSTRUCTION,
        "input": "Human user:\nBomb?\n\nAI assistant:\nNo.\n\n",
        "output": output,
    }
    path = tmp_path / "gr.json"
    path.write_text(json.dumps([row]))
    (vl,) = load_examples(path, on_bad_row="fail", require_target=True).examples
    assert (vl.request_label, vl.response_label, vl.refusal_label) == ("harmful", "unharmful", "refusal")
    assert vl.target == (
        "<think>\n# Task 1\n\n## Reasoning Step 1\nIt asks for a bomb.\n</think>\n"
        "<result>\nRequest: harmful\nResponse: unharmful\n</result>"
    )
    (text,) = load_examples(path, profile="guardreasoner", on_bad_row="fail", require_target=True).examples
    assert text.target == output


def test_native_rows_round_trip(image_dir):
    ex = Sample(
        id="x",
        labels={"request": "harmful"},
        prompt="p",
        response=None,
        images=(str(image_dir / "img" / "a.png"),),
        meta={"wrong": 4},
    )
    path = image_dir / "out" / "rows.jsonl"
    write_examples(path, [ex])
    row = json.loads(path.read_text())
    assert row["images"] == [str(image_dir / "img" / "a.png")]  # outside the file's directory: absolute
    (back,) = load_examples(path, on_bad_row="fail").examples
    assert (back.prompt, back.images, back.request_label, back.id, dict(back.meta)) == (
        ex.prompt,
        ex.images,
        "harmful",
        "x",
        {"wrong": 4},
    )


BAD_ROWS = [
    ("not json at all", "not valid JSON"),
    ('["a", "list"]', "must be a JSON object"),
    ({"foo": 1}, "unknown row format"),
    (sharegpt("Human user:\nHi\n\nAI assistant:\nNone\n\n", images=["img/missing.png"]), "placeholder"),
    (
        sharegpt("Human user:\n<image>\nHi\n\nAI assistant:\nNone\n\n", images=["img/missing.png"]),
        "image file not found",
    ),
    (
        sharegpt("Human user:\n<image>\nHi\n\nAI assistant:\nNone\n\n", images=["img/broken.png"]),
        "cannot read image",
    ),
    (
        sharegpt(
            "Human user:\nHi\n\nAI assistant:\nNone\n\n", target=TARGET.replace("unharmful", "dangerous", 1)
        ),
        "cannot read the labels",
    ),
    ({"prompt": "Hi", "request_label": "dangerous"}, "unknown request label 'dangerous'"),
    ({"prompt": "Hi"}, "no request label"),
    ({"prompt": "Hi", "response": "Yo", "request_label": "harmful"}, "no response label"),
    ({"prompt": "Hi", "request_label": "harmful", "response_label": "harmful"}, "without a response"),
    ({"prompt": "   ", "request_label": "harmful"}, "empty request text"),
    (
        {"prompt": "Hi", "response": " ", "request_label": "harmful", "response_label": "harmful"},
        "empty response text",
    ),
    (sharegpt("Hi there"), "does not start with 'Human user:'"),
    (sharegpt("Human user:\nHi<|im_end|>\n\nAI assistant:\nNone\n\n"), "chat-template token '<|im_end|>'"),
    ({"prompt": "Hi", "request_label": "harmful", "id": "dup"}, None),
    ({"prompt": "Ho", "request_label": "harmful", "id": "dup"}, "duplicate id 'dup'"),
]


def test_every_bad_row_is_reported_with_its_row_number_and_skipped_with_a_count(image_dir):
    path = write_jsonl(image_dir / "bad.jsonl", [r for r, _ in BAD_ROWS])
    data = load_examples(path, on_bad_row="skip")
    expected = [(i + 1, why) for i, (_, why) in enumerate(BAD_ROWS) if why]
    assert data.rows == len(BAD_ROWS) and data.skipped == len(expected)
    assert [e.id for e in data.examples] == ["dup"]
    for issue, (row, why) in zip(data.issues, expected, strict=True):
        assert issue.row == row and why in issue.reason, (issue, why)
        assert str(issue).startswith(f"{path}:{row}: ")
    assert "1 examples from 17 rows (16 bad rows skipped)" in data.summary()


def test_fail_mode_raises_one_error_listing_every_bad_row(image_dir):
    path = write_jsonl(image_dir / "bad.jsonl", [r for r, _ in BAD_ROWS])
    with pytest.raises(DataError) as info:
        load_examples(path, on_bad_row="fail")
    assert len(info.value.issues) == 16
    assert f"{path}:1: not valid JSON" in str(info.value)


def test_sft_needs_a_well_formed_target(tmp_path):
    rows = [
        {"prompt": "Hi", "request_label": "unharmful"},  # no target
        {"prompt": "Hi", "request_label": "unharmful", "target": "Request: unharmful"},  # no <think>/<result>
        {"prompt": "Hi", "request_label": "unharmful", "target": TARGET},
    ]
    data = load_examples(write_jsonl(tmp_path / "t.jsonl", rows), require_target=True)
    assert [i.row for i in data.issues] == [1, 2] and len(data.examples) == 1
    assert "no assistant target" in data.issues[0].reason and "<think>" in data.issues[1].reason


def test_max_samples_and_unknown_options(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": f"p{i}", "request_label": "unharmful"} for i in range(5)]
    )
    assert [e.prompt for e in load_examples(path, max_samples=2).examples] == ["p0", "p1"]
    with pytest.raises(DataError, match="unknown data format"):
        load_examples(path, data_format="csv")
    with pytest.raises(DataError, match="cannot read data file"):
        load_examples(tmp_path / "missing.jsonl")


def test_parse_user_text():
    assert parse_user_text("Human user:\nHi\n\nAI assistant:\nNone\n\n") == ("Hi", None)
    assert parse_user_text("Human user:\n<image><image>\nCompare\n\nAI assistant:\nOk\n\n") == (
        "Compare",
        "Ok",
    )
    assert parse_user_text("Human user:\nline 1\n\nline 2\n\nAI assistant:\nNone\n\n") == (
        "line 1\n\nline 2",
        None,
    )


def test_text_only_rows_keep_the_literal_none_prompt(tmp_path):
    """The reference writes a missing prompt as "None"; a text-only training row keeps that text
    (it renders the same), so rows written by the stages read back."""
    row = {
        "messages": [
            {"role": "user", "content": "Human user:\nNone\n\nAI assistant:\nSure.\n\n"},
            {
                "role": "assistant",
                "content": _VL.answer("ok", {"request": "unharmful", "response": "unharmful"}),
            },
        ]
    }
    path = write_jsonl(tmp_path / "none.jsonl", [row])
    (ex,) = load_examples(path, on_bad_row="fail", require_target=True).examples
    assert (ex.prompt, ex.response, ex.labels) == (
        "None",
        "Sure.",
        {"request": "unharmful", "response": "unharmful"},
    )
    write_examples(tmp_path / "back.jsonl", [ex])
    (back,) = load_examples(tmp_path / "back.jsonl", on_bad_row="fail").examples
    assert back.prompt == "None"


def test_deprecated_names_still_work():
    from guardrail.training import data

    with pytest.warns(DeprecationWarning, match="guardrail.samples.Sample"):
        ex = data.Example(
            "p", "r", request_label="harmful", response_label="unharmful", refusal_label="refusal", id="e"
        )
    assert isinstance(ex, Sample)
    assert ex.labels == {"request": "harmful", "response": "unharmful", "refusal": "refusal"}
    with pytest.warns(DeprecationWarning, match="guardrail.profiles.parse_user_text"):
        assert data.parse_user_text("Human user:\nHi\n\nAI assistant:\nNone\n\n") == ("Hi", None)
    with pytest.warns(DeprecationWarning, match="answer"):
        assert data.vl_target("r", "harmful", None) == _VL.answer("r", {"request": "harmful"})
