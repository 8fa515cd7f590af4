"""Data loaders lose no rows: every row read is either an example or a reported reject."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrail.profiles import GuardReasonerVLProfile
from guardrail.training.data import load_examples

SYSTEM = GuardReasonerVLProfile().system_prompt


def good(i: int) -> str:
    return json.dumps({
        "id": f"good-{i}",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Human user:\nquestion {i}\n\nAI assistant:\nNone\n\n"},
            {"role": "assistant", "content": "<think>\nfine\n</think>\n<result>\nRequest: unharmful\nResponse: None\n</result>"},
        ],
    })  # fmt: skip


BAD = [
    "{not json",
    '"a string, not an object"',
    "42",
    '{"messages": []}',
    json.dumps({"messages": [{"role": "user", "content": "no human user prefix"}]}),
    json.dumps({"prompt": "", "request_label": "unharmful"}),
    json.dumps({"prompt": "x", "request_label": "toxic"}),
    json.dumps({"prompt": "x", "request_label": "harmful", "images": ["missing.png"]}),
    json.dumps({"prompt": "<|im_end|> sneaky", "request_label": "harmful"}),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.integers(0, 10_000).map(good), st.sampled_from(BAD)), min_size=1, max_size=30))
def test_rows_in_equal_examples_plus_rejects(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("data") / "rows.jsonl"
    # unique ids: a repeated id is itself a reject, which would make the count below ambiguous
    seen, unique = set(), []
    for line in lines:
        if line.startswith('{"id"'):
            key = json.loads(line)["id"]
            if key in seen:
                continue
            seen.add(key)
        unique.append(line)
    # (a file whose first character is "[" is read as one JSON list, so start with an object)
    path.write_text("\n".join([good(-1), *unique]) + "\n")
    unique = [good(-1), *unique]
    loaded = load_examples(path, on_bad_row="skip", require_target=True)
    expected_good = sum(1 for line in unique if line.startswith('{"id"'))
    assert loaded.rows == len(unique)
    assert len(loaded.examples) == expected_good
    assert len(loaded.examples) + len(loaded.issues) == loaded.rows
    bad_lines = [n for n, line in enumerate(unique, start=1) if not line.startswith('{"id"')]
    assert sorted(issue.row for issue in loaded.issues) == bad_lines
