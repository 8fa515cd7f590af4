"""Reward functions: exact values on hand-written completions."""

from __future__ import annotations

import doctest

import pytest

from guardrail.training import rewards
from guardrail.training.rewards import (
    accuracy_reward,
    build_reward_funcs,
    format_reward,
    length_aware_safety_reward,
    make_length_aware_safety_reward,
    safety_reward,
)


def answer(request: str, response: str = "None", think: str = "The user asks about baking. Safe.") -> str:
    return f"<think>\n{think}\n</think>\n<result>\nRequest: {request}\nResponse: {response}\n</result>"


CORRECT = answer("unharmful")  # gold: request unharmful, no response
WRONG = answer("harmful")
MALFORMED_NO_THINK = "<result>\nRequest: unharmful\nResponse: None\n</result>"  # labels right, format wrong
MALFORMED_TRAILING = CORRECT + "\nextra words"
MALFORMED_EMPTY_THINK = "<think> </think><result>\nRequest: unharmful\nResponse: None\n</result>"
MALFORMED_TWO_THINKS = "<think>a</think><think>b</think><result>\nRequest: unharmful\n</result>"
UNPARSABLE = "I think it is fine."
GOLD = {"request_label": ["unharmful"], "response_label": [None]}


def test_doctests():
    for module in (rewards,):
        failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (CORRECT, 1.0),
        (WRONG, 1.0),  # format only
        (MALFORMED_NO_THINK, 0.0),
        (MALFORMED_TRAILING, 0.0),
        (MALFORMED_EMPTY_THINK, 0.0),
        (MALFORMED_TWO_THINKS, 0.0),
        (UNPARSABLE, 0.0),
        ("<think>x</think><result>no labels</result>", 0.0),
        ("  <think>\nok\n</think>\n\n<result>\nrequest: HARMFUL\n</result>\n", 1.0),
    ],
)
def test_format_reward(completion, expected):
    assert format_reward([completion]) == [expected]


def test_chat_completions_are_read_like_strings():
    chat = [[{"role": "assistant", "content": CORRECT}], [{"role": "assistant", "content": WRONG}]]
    assert format_reward(chat) == [1.0, 1.0]
    assert accuracy_reward(chat, request_label=["unharmful"] * 2, response_label=[None] * 2) == [1.0, 0.5]


@pytest.mark.parametrize(
    ("completion", "gold_request", "gold_response", "expected"),
    [
        (CORRECT, "unharmful", None, 1.0),
        (WRONG, "unharmful", None, 0.5),  # response task: None expected and given
        (answer("harmful", "harmful"), "harmful", "harmful", 1.0),
        (answer("harmful", "unharmful"), "harmful", "harmful", 0.5),
        (answer("unharmful", "unharmful"), "harmful", "harmful", 0.0),
        (
            answer("unharmful", "harmful"),
            "unharmful",
            None,
            0.5,
        ),  # claims a harmful response that is not there
        (answer("unharmful", "unharmful"), "unharmful", None, 1.0),  # "unharmful" for no response is fine
        (
            "<think>x</think><result>\nRequest: unharmful\n</result>",
            "unharmful",
            None,
            1.0,
        ),  # no response label
        ("<think>x</think><result>\nRequest: unharmful\n</result>", "unharmful", "unharmful", 0.5),
        (MALFORMED_NO_THINK, "unharmful", None, 1.0),  # accuracy does not look at the format
        (UNPARSABLE, "unharmful", None, 0.5),  # no request label: 0; no response label for no response: 1
        (UNPARSABLE, "harmful", "harmful", 0.0),
    ],
)
def test_accuracy_reward(completion, gold_request, gold_response, expected):
    assert accuracy_reward([completion], request_label=[gold_request], response_label=[gold_response]) == [
        expected
    ]


def test_safety_reward_is_format_times_accuracy():
    completions = [CORRECT, WRONG, MALFORMED_NO_THINK, UNPARSABLE]
    n = len(completions)
    assert safety_reward(completions, request_label=["unharmful"] * n, response_label=[None] * n) == [
        1.0,
        0.5,
        0.0,
        0.0,
    ]


@pytest.mark.parametrize(
    ("completion", "length", "beta", "expected"),
    [
        (CORRECT, 10, 1.0, 0.0),  # correct: 0 whatever the length
        (CORRECT, 1000, 1 / 6, 0.0),
        (WRONG, 500, 1.0, -2.0),  # r_safety 0.5, l_norm 0.5: -0.5 / 0.25
        (WRONG, 1000, 1.0, -0.5),  # l_norm 1
        (WRONG, 2000, 1.0, -0.5),  # longer than max_length: l_norm capped at 1
        (MALFORMED_NO_THINK, 500, 1.0, -4.0),  # r_safety 0: -1 / 0.25
        (MALFORMED_NO_THINK, 1000, 1.0, -1.0),
        (WRONG, 500, 1 / 6, -18.0),  # Eco: the cut-off 1/6 < l_norm: -0.5 * 36
        (MALFORMED_NO_THINK, 900, 1 / 6, -36.0),
        (MALFORMED_NO_THINK, 100, 1 / 6, -100.0),  # l_norm 0.1 below the cut-off: -1 / 0.01
        (MALFORMED_NO_THINK, 1, 1.0, -400.0),  # tiny length: the floor 0.05 guards the division
        (MALFORMED_NO_THINK, 0, 1.0, -400.0),  # empty: no division by zero
        (WRONG, 0, 1 / 6, -200.0),
    ],
)
def test_length_aware_safety_reward(completion, length, beta, expected):
    got = length_aware_safety_reward(
        [completion],
        request_label=["unharmful"],
        response_label=[None],
        completion_ids=[[7] * length],
        beta=beta,
        max_length=1000,
    )
    assert got == [pytest.approx(expected)]


def test_length_term_without_token_ids_counts_characters_and_floor_is_configurable():
    text = MALFORMED_NO_THINK
    got = length_aware_safety_reward([text], request_label=["unharmful"], max_length=len(text) * 2, floor=0.1)
    assert got == [pytest.approx(-4.0)]
    assert length_aware_safety_reward([""], request_label=["unharmful"], floor=0.1) == [pytest.approx(-100.0)]


def test_bad_settings_and_columns_are_errors():
    with pytest.raises(ValueError, match="beta"):
        make_length_aware_safety_reward(beta=0)
    with pytest.raises(ValueError, match="floor"):
        make_length_aware_safety_reward(beta=0.1, floor=0.2)
    with pytest.raises(ValueError, match="request_label"):
        accuracy_reward([CORRECT, WRONG], request_label=["unharmful"])


def test_built_reward_functions_have_trl_signature_and_names():
    funcs = build_reward_funcs(
        ["format", "accuracy", "safety", "length_aware_safety"], beta=1 / 6, max_length=100
    )
    assert [f.__name__ for f in funcs] == ["format", "accuracy", "safety", "length_aware_safety"]
    # TRL passes prompts, completions, completion_ids and every data column as keywords
    kwargs = dict(
        prompts=["p", "p"],
        completions=[CORRECT, WRONG],
        completion_ids=[[1] * 50, [1] * 50],
        request_label=["unharmful", "unharmful"],
        response_label=[None, None],
        images=[[], []],
        id=["a", "b"],
        trainer_state=None,
    )
    assert [f(**kwargs) for f in funcs] == [[1.0, 1.0], [1.0, 0.5], [1.0, 0.5], [0.0, pytest.approx(-18.0)]]
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_funcs(["nope"])
