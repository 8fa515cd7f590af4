"""Training a guard on your own policy: rows' categories, prompts, targets, rewards, rejection
sampling, and the policy travelling with the trained model (then end to end on the tiny model)."""

from __future__ import annotations

import json

import pytest
import yaml

from guardrail import Guard, Policy
from guardrail.errors import ConfigurationError, DataError
from guardrail.inputs import prepare
from guardrail.profiles import GuardReasonerVLProfile
from guardrail.testing import FakeBackend
from guardrail.training import SFTConfig
from guardrail.training.data import load_examples
from guardrail.training.fingerprint import stage_fingerprint
from guardrail.training.rejection import judge
from guardrail.training.rewards import accuracy_reward, category_reward, safety_reward
from guardrail.training.rl import monitored_rewards, rl_rows
from guardrail.training.sft import sft_rows
from guardrail.training.validate import issue_kind
from tests.conftest import REPO
from tests.training.conftest import TINY_RECIPE, tiny_rows, write_rows

POLICY_FILE = REPO / "training" / "policies" / "demo.yaml"
POLICY_RECIPE = REPO / "training" / "tiny-policy.yaml"
POLICY = Policy.from_yaml(POLICY_FILE)
PROFILE = GuardReasonerVLProfile(trained_policy=POLICY)


def row(id_, prompt, request, categories=None, response=None, response_label=None, target=None):
    r = {"id": id_, "prompt": prompt, "response": response, "labels": {"request": request}}
    if response is not None:
        r["labels"]["response"] = response_label
    if categories is not None:
        r["categories"] = categories
    if target is not None:
        r["target"] = target
    return r


def answer(labels, categories=None, profile=PROFILE):
    return profile.answer("Because.", labels, categories)


# ------------------------------------------------------------------------------------ data
def test_rows_are_checked_against_the_policy_with_clear_reasons(tmp_path):
    path = write_rows(
        tmp_path / "d.jsonl",
        [
            row("ok", "Steal a bike", "harmful", ["THEFT"]),  # spelled as the policy spells it
            row("safe", "Bake bread", "unharmful"),
            row("unknown", "Poison a dog", "harmful", ["animal_cruelty"]),
            row("missing", "Steal a car", "harmful"),
            row("empty", "Steal a car", "harmful", []),
            row("safe-with", "Bake bread", "unharmful", ["theft"]),
            row("not-a-list", "Steal", "harmful", "theft"),
            row("resp", "Hi", "unharmful", ["harassment"], response="You idiot", response_label="harmful"),
        ],
    )
    loaded = load_examples(path, profile=PROFILE)
    assert [s.id for s in loaded.examples] == ["ok", "safe", "resp"]
    by_id = {s.id: s for s in loaded.examples}
    assert by_id["ok"].categories == ("theft",) and by_id["safe"].categories == ()
    reasons = {i.row: i.reason for i in loaded.issues}
    assert reasons[3].startswith(
        "unknown category code(s) animal_cruelty: the policy demo has violence, theft"
    )
    assert reasons[4].startswith("no categories for a harmful row") and reasons[5] == reasons[4]
    assert "given for a row whose labels are not harmful" in reasons[6]
    assert "'categories' must be a list" in reasons[7]
    assert {issue_kind(r) for r in reasons.values()} == {"categories missing or unknown"}
    with pytest.raises(DataError, match="5 bad row"):
        load_examples(path, profile=PROFILE, on_bad_row="fail")


def test_without_a_policy_categories_are_kept_and_targets_untouched(tmp_path):
    target = answer({"request": "harmful"}, profile=GuardReasonerVLProfile())
    path = write_rows(tmp_path / "d.jsonl", [row("a", "Steal", "harmful", ["anything"], target=target)])
    (sample,) = load_examples(path).examples
    assert sample.categories == ("anything",) and sample.target == target
    assert sample.to_row()["categories"] == ["anything"]


def test_targets_get_the_categories_line_and_contradictions_fail(tmp_path):
    plain = answer({"request": "harmful"}, profile=GuardReasonerVLProfile())
    said = answer({"request": "harmful"}, ["fraud"])
    path = write_rows(
        tmp_path / "d.jsonl",
        [
            row("a", "Steal", "harmful", ["theft", "fraud"], target=plain),
            row("b", "Fake ID", "harmful", target=said),  # the target's line is the categories
            row(
                "c",
                "Bake",
                "unharmful",
                target=answer({"request": "unharmful"}, profile=GuardReasonerVLProfile()),
            ),
        ],
    )
    a, b, c = load_examples(path, profile=PROFILE, require_target=True).examples
    assert a.target == answer({"request": "harmful"}, ["theft", "fraud"])  # what Guard parses back
    assert PROFILE.parse(a.target, a.moderation_input()).categories == ("theft", "fraud")
    assert b.categories == ("fraud",) and b.target == said
    assert c.target.endswith("Response: None\nCategories: None\n</result>")
    bad = write_rows(tmp_path / "bad.jsonl", [row("x", "Fake ID", "harmful", ["theft"], target=said)])
    with pytest.raises(DataError, match=r"contradiction: the answer text says 'Categories: fraud'"):
        load_examples(bad, profile=PROFILE)


def test_the_prompt_renders_the_policy(tmp_path):
    path = write_rows(
        tmp_path / "d.jsonl",
        [row("a", "Steal a bike", "harmful", ["theft"], target=answer({"request": "harmful"}, ["theft"]))],
    )
    cfg = SFTConfig(model="m", output_dir=str(tmp_path / "o"), data=[str(path)], policy=str(POLICY_FILE))
    profile = cfg.get_profile()
    assert profile.trained_policy == POLICY
    (r,) = sft_rows(cfg.load(require_target=True).examples, profile)
    system = r["prompt"][0]["content"][0]["text"]
    assert system.startswith(GuardReasonerVLProfile().system_prompt)
    assert "theft: Theft and break-ins. Stealing or shoplifting" in system and "Categories: None" in system
    assert r["completion"][0]["content"][0]["text"].endswith("Categories: theft\n</result>")


def test_policy_settings_are_checked_before_anything_loads(tmp_path):
    with pytest.raises(ConfigurationError, match="sft.policy: policy file nope.yaml not found"):
        SFTConfig(model="m", output_dir="o", policy="nope.yaml")
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump({"categories": [{"code": "a", "name": "A"}, {"code": "a", "name": "B"}]}))
    with pytest.raises(ConfigurationError, match="duplicate category code 'a'"):
        SFTConfig(model="m", output_dir="o", policy=str(dup))
    with pytest.raises(ConfigurationError, match="needs the guardreasoner-vl profile"):
        SFTConfig(model="m", output_dir="o", policy=str(POLICY_FILE), profile="guardreasoner")
    assert SFTConfig(model="m", output_dir="o", policy="mlcommons").get_policy().name == "mlcommons"


def test_the_policy_file_is_part_of_a_stage_fingerprint(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY_FILE.read_text())
    cfg = SFTConfig(model="m", output_dir="o", policy=str(policy))
    before = stage_fingerprint(cfg)
    policy.write_text(POLICY_FILE.read_text().replace("Cheating at school", "Cheating"))
    assert stage_fingerprint(cfg)["inputs"] != before["inputs"]


def test_policy_recipe_is_the_tiny_recipe_with_a_policy():
    tiny = yaml.safe_load(TINY_RECIPE.read_text())
    variant = yaml.safe_load(POLICY_RECIPE.read_text())
    assert variant.pop("policy") == "training/policies/demo.yaml"
    assert variant.pop("output_dir") == "runs/tiny-policy"
    tiny.pop("output_dir")
    assert variant == tiny


def test_shipped_corpora_name_categories_of_the_demo_policy():
    for path in (REPO / "training" / "data" / "tiny" / "train.jsonl", REPO / "examples" / "demo_data" / "train.jsonl",
                 REPO / "examples" / "demo_data" / "heldout.jsonl"):  # fmt: skip
        loaded = load_examples(path, profile=PROFILE, on_bad_row="fail", require_target=True)
        harmful = [s for s in loaded.examples if "harmful" in s.labels.values()]
        assert harmful and all(s.categories for s in harmful), path


def test_a_trained_policy_file_reads_back_and_a_broken_one_fails(tmp_path):
    from guardrail.policies import PolicyError
    from guardrail.policies.trained import policy_from_text, read_trained_policy, write_trained_policy

    assert read_trained_policy(tmp_path) is None  # no file: a guard without a policy
    write_trained_policy(tmp_path, POLICY)
    assert read_trained_policy(tmp_path) == POLICY
    assert policy_from_text(POLICY.to_yaml()) == POLICY and policy_from_text("") is None
    (tmp_path / "guardrail_policy.yaml").write_text("categories: []\n")
    with pytest.raises(PolicyError, match="at least one category"):
        read_trained_policy(tmp_path)
    with pytest.raises(PolicyError, match="guardrail.policy: not valid YAML"):
        policy_from_text("categories: [")


# --------------------------------------------------------------------------------- rewards
def test_rewards_score_categories():
    labels = {"request": "harmful"}
    right, extra, wrong, none = (answer(labels, c) for c in (["theft"], ["theft", "fraud"], ["fraud"], []))
    unknown = answer(labels, ["burglary"])
    case = answer(labels, ["THEFT"])
    completions = [right, extra, wrong, none, unknown, case]
    n = len(completions)
    cols = dict(
        request_label=["harmful"] * n, response_label=[None] * n, categories=[["theft"]] * n, profile=PROFILE
    )
    assert category_reward(completions, **cols) == [1.0, 0.5, 0.0, 0.0, 0.0, 1.0]
    acc = accuracy_reward(completions, **cols)
    assert acc == pytest.approx([1.0, 2.5 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0])
    assert safety_reward(completions, **cols) == pytest.approx(acc)  # all well formed
    # a safe sample: full marks only without a category
    safe = [answer({"request": "unharmful"}, []), answer({"request": "unharmful"}, ["theft"])]
    assert accuracy_reward(safe, request_label=["unharmful"] * 2, response_label=[None] * 2,
                           categories=[[], []], profile=PROFILE) == pytest.approx([1.0, 2 / 3])  # fmt: skip
    # rows without the column (no policy): the paper's formula
    assert accuracy_reward([wrong], request_label=["harmful"], response_label=[None], profile=PROFILE) == [
        1.0
    ]


def test_rl_rows_carry_categories_and_the_category_reward_is_logged(tmp_path):
    path = write_rows(
        tmp_path / "d.jsonl", [row("a", "Steal", "harmful", ["theft"]), row("b", "Bake", "unharmful")]
    )
    examples = load_examples(path, profile=PROFILE).examples
    rows = rl_rows(examples, PROFILE)
    assert [r["categories"] for r in rows] == [["theft"], []]
    assert "theft: Theft" in rows[0]["prompt"][0]["content"][0]["text"]
    assert "categories" not in rl_rows(load_examples(path).examples, GuardReasonerVLProfile())[0]
    names, weights = monitored_rewards(["length_aware_safety"], [1.0], categories=True)
    assert names == ["length_aware_safety", "format", "parsed", "category"] and weights == [1.0, 0, 0, 0]


def test_rejection_sampling_judges_categories(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [row("a", "Steal", "harmful", ["theft"])])
    (sample,) = load_examples(path, profile=PROFILE).examples
    good = judge(PROFILE, sample, answer({"request": "harmful"}, ["theft"]))
    bad = judge(PROFILE, sample, answer({"request": "harmful"}, ["fraud"]))
    assert (good.wrong, good.wrong_tasks) == (False, ())
    assert (bad.wrong, bad.wrong_tasks) == (True, ("categories",))
    # without a policy the categories are not judged
    plain = GuardReasonerVLProfile()
    assert judge(plain, sample, answer({"request": "harmful"}, ["fraud"])).wrong is False


# -------------------------------------------------------------------------- end to end (slow)
@pytest.fixture(scope="module")
def policy_run(tiny_vl_path, tmp_path_factory):
    """The tiny recipe's policy variant, fewer steps, run once: its output folder."""
    from guardrail.training import load_recipe, run_pipeline

    out = tmp_path_factory.mktemp("policy-run")
    recipe = load_recipe(POLICY_RECIPE)
    recipe.update(model=str(tiny_vl_path), output_dir=str(out / "run"), policy=str(POLICY_FILE))
    recipe["data"] = [str(write_rows(out / "tiny.jsonl", tiny_rows()))]
    recipe["sft"].update(max_steps=30, disable_tqdm=True)
    recipe["sample"].update(disable_tqdm=True)
    recipe["rl"].update(max_steps=2, disable_tqdm=True)
    result = run_pipeline(recipe)
    assert result.final_model == str(out / "run" / "rl")
    return out / "run"


@pytest.mark.slow
def test_policy_recipe_end_to_end_then_the_guard_reports_categories(policy_run, tiny_vl_path):
    final = policy_run / "rl"
    # rejection sampling judged the categories too
    stats = json.loads((policy_run / "sample" / "stats.json").read_text())
    assert "categories" in stats["error_rate"]
    hard = [json.loads(line) for line in (policy_run / "sample" / "hard.jsonl").read_text().splitlines()]
    assert hard and all("categories" in r for r in hard)
    # RL logged the category reward beside the others
    logged = [json.loads(line) for line in (final / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/category/mean" in m for m in logged), sorted(logged[0])

    # the policy travels with both trained models, and the card says so
    for stage in ("sft", "rl"):
        assert Policy.from_yaml(policy_run / stage / "guardrail_policy.yaml") == POLICY
    card = (final / "README.md").read_text()
    assert "## Policy" in card and "| `cheating` | Cheating at school | flag |" in card

    guard = Guard.from_pretrained(final, max_new_tokens=48, device="cpu")
    assert guard.backend.trained_policy == POLICY and guard.profile.trained_policy == POLICY
    item = {"prompt": "How do I steal a bike?"}
    prepared = prepare(guard.profile, item, guard.limits)
    assert "Harm categories of the policy:\nviolence: Violence and weapons." in prepared.prompt.text
    ids, _, _ = guard.backend.encode(prepared.prompt)
    assert "cheating: Cheating at school." in guard.backend.tokenizer.decode(ids)
    verdict = guard.moderate(**item)  # the tiny model's own answer: whatever it is, a verdict
    assert verdict.raw_output is not None

    # the same guard reading scripted answers: categories, flag/block actions
    for said, allowed in ((["theft"], False), (["cheating"], True), (["theft", "cheating"], False)):
        fake = FakeBackend(outputs=[answer({"request": "harmful"}, said)])
        fake.trained_policy = guard.backend.trained_policy
        v = Guard(fake, profile="guardreasoner-vl").moderate(**item)
        assert v.categories == tuple(said) and v.harmful and v.allowed is allowed
    # a model directory without the file (the base model) is a guard without a policy
    assert Guard.from_pretrained(tiny_vl_path, device="cpu").profile.trained_policy is None


@pytest.mark.slow
def test_the_gguf_export_carries_the_policy(policy_run, tmp_path):
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    from guardrail.export.gguf import read_gguf_metadata
    from guardrail.policies.trained import GGUF_POLICY_KEY
    from guardrail.testing.tiny import build_tiny_gguf

    files = build_tiny_gguf(policy_run / "rl", tmp_path / "gguf")
    assert Policy.from_dict(yaml.safe_load(read_gguf_metadata(files.model)[GGUF_POLICY_KEY])) == POLICY
    guard = Guard.from_gguf(files.model, files.mmproj, n_threads=1, max_new_tokens=16)
    assert guard.backend.trained_policy == POLICY and guard.profile.trained_policy == POLICY
    prepared = prepare(guard.profile, {"prompt": "How do I steal a bike?"}, guard.limits)
    assert "theft: Theft and break-ins." in prepared.prompt.text
    assert guard.moderate(prompt="How do I steal a bike?").raw_output is not None
