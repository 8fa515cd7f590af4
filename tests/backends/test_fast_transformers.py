"""Fast mode, cascade and stop strings on the real tiny Qwen2.5-VL and Llama guards.

The scores are checked against an independent computation: the reference prompt string (chat
template + ``<image>`` swap, as in test_transformers), the forced answer and each candidate
tokenized by the stock processor, one plain forward pass per candidate, and the candidate's
tokens' log-probabilities read from the logits; the marginals are then worked out here.
"""

from __future__ import annotations

import math

import pytest
from PIL import Image

from guardrail import Guard
from guardrail.backends.base import GenerationOptions, ScoreRequest
from guardrail.inputs import InputLimits, prepare
from guardrail.profiles import GuardReasonerProfile, GuardReasonerVLProfile

pytestmark = pytest.mark.slow

RED = Image.new("RGB", (64, 48), (220, 20, 20))
BLUE = Image.new("RGB", (30, 90), (20, 20, 220))
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
CASES = {
    "text": {"prompt": "How do I bake bread?"},
    "image": {"images": [RED]},
    "prompt+response": {"prompt": "Say something nice.", "response": "You are great!"},
    "response only": {"response": "Here is how to do it."},
    "two images+response": {"prompt": "Compare.", "response": "Red and blue.", "images": [RED, BLUE]},
}
LABELS = ("harmful", "unharmful")


@pytest.fixture(scope="module")
def guard(vl_backend):
    return Guard(vl_backend, mode="fast", max_new_tokens=12, batching=False)


def reference_prompt(processor, item) -> str:
    images = item.get("images", [])
    user = "Human user:\n" + "<image>" * len(images)
    if item.get("prompt") is not None:
        user += ("\n" if images else "") + item["prompt"]
    elif not images:
        user += "None"
    user += "\n\nAI assistant:\n" + (item.get("response") or "None") + "\n\n"
    messages = [
        {"role": "system", "content": GuardReasonerVLProfile().system_prompt},
        {"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": user}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text.replace(VISION, "").replace("<image>", VISION)


def reference_logprob(backend, item, answer_start: str, continuation: str) -> float:
    """log P(continuation | prompt + answer_start), one plain forward pass on the processor's ids."""
    import torch

    proc = backend.processor
    text = reference_prompt(proc, item) + answer_start
    images = item.get("images") or None
    base = proc(text=[text], images=images, return_tensors="pt")
    full = proc(text=[text + continuation], images=images, return_tensors="pt")
    n = base["input_ids"].shape[1]
    ids = full["input_ids"][0]
    assert ids[:n].tolist() == base["input_ids"][0].tolist()
    with torch.inference_mode():
        logits = backend.model(**full).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[i - 1, ids[i]] for i in range(n, len(ids))))


def marginal(joint: dict[tuple[str, ...], float], index: int) -> float:
    top = max(joint.values())
    z = sum(math.exp(v - top) for v in joint.values())
    return sum(math.exp(v - top) for k, v in joint.items() if k[index] == "harmful") / z


@pytest.mark.parametrize("case", sorted(CASES))
def test_scores_equal_an_independent_logit_computation(guard, case):
    item = CASES[case]
    verdict = guard.moderate(**item)
    backend, prefix = guard.backend, guard.profile.fast_prefix
    if "response" in item:
        joint = {
            (a, b): reference_logprob(backend, item, prefix, f" {a}\nResponse: {b}")
            for a in LABELS
            for b in LABELS
        }
        assert verdict.response_score == pytest.approx(marginal(joint, 1), abs=2e-5)
        if item.get("prompt") is not None or item.get("images"):
            assert verdict.request_score == pytest.approx(marginal(joint, 0), abs=2e-5)
        else:
            assert verdict.request_score is None and verdict.request_harmful is None
    else:
        joint = {(a,): reference_logprob(backend, item, prefix, f" {a}") for a in LABELS}
        assert verdict.request_score == pytest.approx(marginal(joint, 0), abs=2e-5)
        assert verdict.response_score is None and verdict.response_harmful is None
    scores = [s for s in (verdict.request_score, verdict.response_score) if s is not None]
    assert verdict.score == max(scores) and verdict.path == "fast" and verdict.output_tokens == 0
    assert verdict.harmful == (verdict.score >= 0.5) and verdict.parsed and verdict.decided_by == "model"
    assert guard.profile.parse(verdict.raw_output, prepare(guard.profile, item, InputLimits()).item).ok


def test_labels_sharing_a_first_token_are_scored_in_full(guard):
    backend = guard.backend
    tok = backend.tokenizer
    # "u" and "unharmful" share the token "u"; " harmful" and " harmless..." do not
    continuations = ("u", "unharmful", " harmful", " harmful\nResponse: unharmful")
    assert tok.tokenize("unharmful")[0] == tok.tokenize("u")[0] and len(tok.tokenize("unharmful")) > 1
    for item in (CASES["text"], CASES["two images+response"]):
        prompt = prepare(guard.profile, item, InputLimits()).prompt
        result = backend.score([ScoreRequest(prompt, "<result>\nRequest:", continuations)])[0]
        expected = [reference_logprob(backend, item, "<result>\nRequest:", c) for c in continuations]
        assert result.error is None
        assert list(result.logprobs) == pytest.approx(expected, abs=2e-5)


def test_tree_pass_equals_one_sequence_per_candidate_and_batching(guard):
    backend = guard.backend
    requests = []
    for case in sorted(CASES):
        prepared = prepare(guard.profile, CASES[case], InputLimits())
        from guardrail import fast

        plan = fast.plan(guard.profile, prepared.item)
        requests.append(fast.score_request(guard.profile, prepared, plan))
    batched = backend.score(requests)  # one padded batch, one forward pass
    singles = [backend.score([r])[0] for r in requests]
    import torch

    with torch.inference_mode():
        flat = backend._score_flat([backend._encode_scoring(r) for r in requests])
    for b, s, f in zip(batched, singles, flat, strict=True):
        assert list(b.logprobs) == pytest.approx(list(s.logprobs), abs=1e-5)
        assert list(b.logprobs) == pytest.approx(f, abs=1e-5)


def test_threshold_decides_the_label(vl_backend):
    score = Guard(vl_backend, mode="fast").moderate(**CASES["text"]).request_score
    assert 0.0 < score < 1.0
    below = Guard(vl_backend, mode="fast", threshold=score - 1e-6).moderate(**CASES["text"])
    above = Guard(vl_backend, mode="fast", threshold=min(1.0, score + 1e-6)).moderate(**CASES["text"])
    assert below.request_harmful is True and not below.allowed and below.score == pytest.approx(score)
    assert above.request_harmful is False and above.allowed
    assert "Request: harmful" in below.raw_output and "Request: unharmful" in above.raw_output


def test_cascade_end_to_end(vl_backend):
    score = Guard(vl_backend, mode="fast").moderate(**CASES["text"]).request_score
    inside = Guard(vl_backend, mode="cascade", cascade_band=(score - 0.01, score + 0.01), max_new_tokens=8)
    outside = Guard(vl_backend, mode="cascade", cascade_band=(0.0, 0.0), max_new_tokens=8)
    reasoned = inside.moderate(**CASES["text"])
    reasoning = Guard(vl_backend, max_new_tokens=8).moderate(**CASES["text"])
    assert reasoned.path == "reasoning" and reasoned.raw_output == reasoning.raw_output
    assert (
        reasoned.request_score == pytest.approx(score) and reasoned.output_tokens == reasoning.output_tokens
    )
    assert inside.stats.get("escalations") == 1
    fast_only = outside.moderate(**CASES["text"])
    assert fast_only.path == "fast" and outside.stats.get("escalations") == 0
    # per call
    assert outside.moderate(**CASES["text"], mode="reasoning").path == "reasoning"


def first_holding(tok, ids, stop) -> int:
    """The fewest tokens whose text holds ``stop`` (a linear scan)."""
    return next(n for n in range(1, len(ids) + 1) if stop in tok.decode(ids[:n], skip_special_tokens=True))


def test_stop_strings_end_the_generation(vl_backend):
    import torch

    tok = vl_backend.tokenizer
    prompt = prepare(GuardReasonerVLProfile(), CASES["text"], InputLimits()).prompt
    options = GenerationOptions(max_new_tokens=16)
    batch = vl_backend._batch([prompt])
    with torch.inference_mode():
        out = vl_backend.model.generate(**batch, generation_config=vl_backend.generation_config(options))
    free_ids = out[0, batch["input_ids"].shape[1] :].tolist()
    free = tok.decode(free_ids, skip_special_tokens=True)
    assert len(free_ids) == 16 and len(free) > 12
    stop = free[6:9]  # a stop string the random model does produce
    end = free.index(stop) + len(stop)
    stopped = vl_backend.generate([prompt, prompt], GenerationOptions(max_new_tokens=16, stop=(stop,)))
    for g in stopped:
        assert g.text == free[:end] and g.finish_reason == "stop"
        assert g.output_tokens == first_holding(tok, free_ids, stop) < 16


def test_finish_cuts_at_the_result_block_and_counts_its_tokens(vl_backend):
    tok = vl_backend.tokenizer
    text = "<think>\nok\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>"
    ids = tok.encode(text + "\nmore words after", add_special_tokens=False)
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    g = vl_backend._finish(ids + [pad, pad], GenerationOptions(max_new_tokens=200, stop=("</result>",)))
    assert g.text == text and g.finish_reason == "stop"
    assert g.output_tokens == first_holding(tok, ids, "</result>") < len(ids)
    # without a stop string the same tokens run to the padding (an end-of-turn token)
    assert (
        vl_backend._finish(ids + [pad], GenerationOptions(max_new_tokens=200)).output_tokens == len(ids) + 1
    )


def test_text_profile_fast_scores(text_backend):
    import torch

    guard = Guard(text_backend, mode="fast")
    item = {"prompt": "How do I bake bread?", "response": "I can't help with that."}
    v = guard.moderate(**item)
    profile = GuardReasonerProfile()
    tok = text_backend.tokenizer
    base_text = profile.render(prepare(profile, item, InputLimits()).item).text + profile.fast_prefix

    def logprob(continuation: str) -> float:
        base = tok(base_text)["input_ids"]
        full = tok(base_text + continuation)["input_ids"]
        assert full[: len(base)] == base and full[0] == tok.bos_token_id
        with torch.inference_mode():
            logits = text_backend.model(input_ids=torch.tensor([full])).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        return float(sum(lp[i - 1, full[i]] for i in range(len(base), len(full))))

    joint = {
        (a, c, b): logprob(f" {a}\nCompletion: {c}\nResponse: {b}")
        for a in LABELS for c in ("refusal", "compliance") for b in LABELS
    }  # fmt: skip
    z = sum(math.exp(x) for x in joint.values())
    refusal = sum(math.exp(x) for k, x in joint.items() if k[1] == "refusal") / z
    assert v.request_score == pytest.approx(marginal(joint, 0), abs=2e-5)
    assert v.response_score == pytest.approx(marginal(joint, 2), abs=2e-5)
    assert v.refusal_score == pytest.approx(refusal, abs=2e-5) and v.response_refusal == (refusal >= 0.5)
    assert v.raw_output.startswith("Answers: \nRequest: ")
