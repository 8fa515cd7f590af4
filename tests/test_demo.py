"""The main job (examples/demo.py) and its demo training set (examples/demo_data/).

The end-to-end tests run the real script in a subprocess, offline, with a temporary cache: the
reduced training budget (``--quick``) trains a real tiny guard with the tiny recipe (``--policy``: its policy
variant, whose verdicts name categories), scores it on the held-out set, then moderates the sample traffic through every channel; a second run must
reuse the cached guard. Full-size timings are measured by hand (see the README), not here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.policies import Policy
from guardrail.profiles import GUARDREASONER_VL_INSTRUCTION, GuardReasonerVLProfile, ModerationInput
from guardrail.profiles.base import ImageSlot
from tests.conftest import PYTHON, REPO, subprocess_env

DEMO = REPO / "examples" / "demo.py"
DATA = REPO / "examples" / "demo_data"
CHANNELS = ("@guard.check", "LangChain", "llama.cpp", "server + OpenAI client")
VERDICTS = {"allow", "BLOCK", "BLOCK (input)", "BLOCK (output)"}
HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _samples() -> list[dict]:
    lines = (REPO / "examples" / "samples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ------------------------------------------------------------------------- the demo set
def test_demo_data_files_are_built_from_their_source():
    """train.jsonl, heldout.jsonl and the pictures are exactly what build.py makes from source.py."""
    proc = subprocess.run(
        [PYTHON, str(DATA / "build.py"), "--check"], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["train", "heldout"])
def test_demo_data_loads_strictly_and_matches_what_guard_sends(name):
    from guardrail.training.data import load_examples

    path = DATA / f"{name}.jsonl"
    loaded = load_examples(path, on_bad_row="fail", require_target=True)  # every row valid for SFT
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(loaded.examples) == len(rows)
    profile = GuardReasonerVLProfile()
    for row, ex in zip(rows, loaded.examples, strict=True):
        system, user, assistant = row["messages"]
        assert system["content"] == GUARDREASONER_VL_INSTRUCTION
        # the user text is the profile's rendering of the request, <image> where each image goes
        item = ModerationInput(prompt=ex.prompt, response=ex.response, images=tuple(ex.images))
        rendered = "".join("<image>" if isinstance(p, ImageSlot) else p for p in profile.user_parts(item))
        assert user["content"] == rendered
        # the target parses to the row's own labels, with numbered reasoning steps
        parsed = profile.parse(assistant["content"], item)
        assert parsed.ok and parsed.labels["request"] == ex.request_label
        assert parsed.reasoning.startswith("1. ") and "\n2. " in parsed.reasoning
    kinds = {
        ("image" if ex.prompt is None else "text+image") if ex.images else "text" for ex in loaded.examples
    }
    assert kinds == {"text", "image", "text+image"}
    assert any(ex.response is not None for ex in loaded.examples)
    harmful = sum(ex.request_label == "harmful" for ex in loaded.examples)
    assert 0.4 <= harmful / len(loaded.examples) <= 0.6  # balanced
    assert {ex.response_label for ex in loaded.examples if ex.response is not None} == {
        "harmful",
        "unharmful",
    }


def test_held_out_set_is_disjoint_from_training_and_sized_as_documented():
    from guardrail.training.data import load_examples

    train = load_examples(DATA / "train.jsonl").examples
    heldout = load_examples(DATA / "heldout.jsonl").examples
    assert 100 <= len(train) <= 140 and 25 <= len(heldout) <= 35
    seen = {(ex.prompt, ex.response, tuple(Path(p).name for p in ex.images)) for ex in train}
    assert not [
        ex.id for ex in heldout if (ex.prompt, ex.response, tuple(Path(p).name for p in ex.images)) in seen
    ]
    assert not {Path(p).name for ex in heldout for p in ex.images if ex.prompt is None} & {
        Path(p).name for ex in train for p in ex.images
    }  # the image-only held-out pictures are new


def test_cache_key_follows_the_recipe_and_the_data(tmp_path, monkeypatch):
    demo = _load("demo_main_job", DEMO)
    full, quick = demo.demo_recipe(quick=False), demo.demo_recipe(quick=True)
    assert demo.cache_key(full) == demo.cache_key(demo.demo_recipe(quick=False))
    assert demo.cache_key(full) != demo.cache_key(quick)
    assert quick["sft"]["max_steps"] > 0 and full["sft"].get("max_steps", -1) == -1
    # a change to the demo data makes another key
    copy = tmp_path / "demo_data"
    copy.mkdir()
    (copy / "train.jsonl").write_text("{}\n")
    before = demo.cache_key(full)
    monkeypatch.setattr(sys.modules["demo_train"], "DEMO_DATA", copy)  # the step that trains
    assert demo.cache_key(full) != before


# ---------------------------------------------------------------------- the main job
def _run(cache: Path, out: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    environment = subprocess_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    if "GUARDRAIL_MODEL" not in env:
        environment.pop("GUARDRAIL_MODEL", None)
    proc = subprocess.run(
        [PYTHON, str(DEMO), "--cache-dir", str(cache), "--json", str(out), *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, json.loads(out.read_text())


def _check_rows(result: dict, *, llamacpp: bool, paths: set[str]) -> None:
    samples = _samples()
    rows = result["rows"]
    assert [(r["channel"], r["sample"]) for r in rows] == [(c, s["name"]) for c in CHANNELS for s in samples]
    kinds = {r["kind"] for r in rows}
    assert {"text", "image", "text+image", "prompt+response"} <= kinds
    for r in rows:
        if r["channel"] == "llama.cpp" and not llamacpp:
            assert r["verdict"] == "skipped" and r["error"]
            continue
        assert r["verdict"] in VERDICTS, r
        assert r["checks"] >= 1 and r["latency_ms"] > 0 and r["decided_by"] in ("model", "policy")
        if r["channel"] != "server + OpenAI client" or r["kind"] == "prompt+response":
            assert r["path"] in paths, r  # OpenAI's moderation result has no field for it
        if r["channel"] in ("@guard.check", "LangChain"):
            # the app channels check the request, and the reply with it unless the request is blocked
            assert r["checks"] == (1 if r["verdict"] == "BLOCK (input)" else 2), r
            blocked = r["verdict"].startswith("BLOCK")
            assert (r["reply"] == "Sorry, I can't help with that.") == blocked, r


@pytest.mark.slow
def test_main_job_trains_reports_f1_moderates_every_channel_and_reuses_its_cache(tmp_path):
    cache = tmp_path / "cache"
    first, result = _run(cache, tmp_path / "first.json", "--quick")
    out = first.stdout
    for expected in ("building the tiny Qwen2.5-VL base model", "training the demo guard", "sft: step",
                     "guardrail.training: rl: starting", "Part 3: verdicts", "TINY demo guard"):  # fmt: skip
        assert expected in out, expected
    guard = result["guard"]
    assert guard["tiny"] and guard["trained_now"] and guard["training_seconds"] > 0
    heldout = guard["heldout"]
    assert heldout["samples"] == 30 and heldout["request"]["n"] == 30 and heldout["response"]["n"] == 10
    assert 0.0 <= heldout["request"]["f1"] <= 100.0
    assert f"request F1 {heldout['request']['f1']:.1f} (n=30" in out
    model_dir = Path(guard["model"])
    assert (model_dir / "config.json").exists() and model_dir.is_relative_to(cache)
    assert (model_dir / ".stage-done.json").exists()
    # the held-out predictions were written by the evaluation harness, one per sample
    predictions = next(Path(guard["cache_dir"], "heldout").glob("*.jsonl"))
    assert len(predictions.read_text().splitlines()) == 30
    llamacpp = HAVE_LLAMA_CPP  # with the llamacpp extra the GGUF export and its channel must work
    if llamacpp:
        assert Path(guard["gguf"]["model"]).stat().st_size > 0 and Path(guard["gguf"]["mmproj"]).exists()
        assert "exporting to GGUF (f32)" in out
        # llama.cpp on the f32 export answers as transformers does (one near-tie allowed)
        same, compared = result["gguf_parity"]
        assert compared == len(_samples()) and same >= compared - 1, result["gguf_parity"]
    else:
        assert "llama.cpp: skipped" in out and guard["gguf_note"]
    _check_rows(result, llamacpp=llamacpp, paths={"reasoning"})
    assert "path: 'reasoning'" in out
    # the table has a line for every row
    table = out[out.index("Part 3: verdicts") :]
    for r in result["rows"]:
        assert any(line.startswith(r["channel"]) and r["sample"] in line for line in table.splitlines())

    # second run: everything comes from the cache, and the same model gives the same verdicts
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    second, again = _run(cache, tmp_path / "second.json", "--quick")
    assert "training: cached" in second.stdout and "held-out evaluation: cached" in second.stdout
    assert ("GGUF export: cached" in second.stdout) == llamacpp
    assert "training the demo guard" not in second.stdout and "building the tiny" not in second.stdout
    assert not again["guard"]["trained_now"] and again["guard"]["heldout"] == heldout
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert [(r["channel"], r["sample"], r["verdict"]) for r in again["rows"]] == [
        (r["channel"], r["sample"], r["verdict"]) for r in result["rows"]
    ]


def test_policy_option_trains_the_policy_variant_under_its_own_key():
    demo = _load("demo_main_job", DEMO)
    plain, policy = demo.demo_recipe(quick=True), demo.demo_recipe(quick=True, policy=True)
    assert "policy" not in plain and policy["policy"] == "training/policies/demo.yaml"
    assert demo.cache_key(plain) != demo.cache_key(policy)
    assert {k: v for k, v in policy.items() if k not in ("policy", "output_dir")} == {
        k: v for k, v in plain.items() if k != "output_dir"
    }  # the same stages and budget


@pytest.mark.slow
def test_main_job_with_policy_shows_categories_end_to_end(tmp_path):
    """--policy: trained on the demo policy, the guard carries it (guardrail_policy.yaml), the
    verdicts can name only its codes, the table and /v1/moderations show them, and the held-out
    evaluation scores every category of the held-out rows. (With --quick's budget the tiny guard
    may not yet write readable answers, so which rows name a category is not asserted.)"""
    proc, result = _run(tmp_path / "cache", tmp_path / "out.json", "--quick", "--policy")
    out = proc.stdout
    policy = Policy.from_yaml(REPO / "training" / "policies" / "demo.yaml")
    model_dir = Path(result["guard"]["model"])
    assert Policy.from_yaml(model_dir / "guardrail_policy.yaml").codes == policy.codes
    assert "with training/tiny-policy.yaml" in out and "policy training/policies/demo.yaml" in out
    assert "the guard was trained on policy demo" in out and "(cheating: flag, not block)" in out
    _check_rows(result, llamacpp=HAVE_LLAMA_CPP, paths={"reasoning"})
    rows = [r for r in result["rows"] if r["verdict"] != "skipped"]
    assert all(set(r["categories"]) <= set(policy.codes) for r in rows)
    table = out[out.index("Part 3: verdicts") :].splitlines()
    assert ("categories" in table[1]) == any(r["categories"] for r in rows)
    for r in rows:
        if r["channel"] == "server + OpenAI client" and r["openai_categories"] is not None:
            want = {k for c in r["categories"] for k in policy.get(c).maps_to}
            assert set(r["openai_categories"]) == want, r  # through the policy's maps_to
    cats = result["guard"]["heldout"]["categories"]
    assert cats["policy"] == "demo"
    scored = {x["category"]: x for x in cats["scores"]}
    assert set(scored) == {"theft", "harassment", "privacy", "fraud", "cheating", "micro"}
    assert scored["micro"]["support"] == 17  # the harmful held-out rows, one category each
    assert "per category (policy demo" in out and "all (micro)" in out


@pytest.mark.slow
def test_main_job_uses_guardrail_model_everywhere_without_training(tiny_vl_path, tmp_path):
    """GUARDRAIL_MODEL: nothing trained; with --export-gguf the given model is exported for the
    llama.cpp channel; --mode cascade reaches every guard (a random model: unreadable outputs are
    blocked by policy)."""
    cache = tmp_path / "cache"
    args = ["--max-new-tokens", "16", "--mode", "cascade", *(["--export-gguf"] if HAVE_LLAMA_CPP else [])]
    proc, result = _run(cache, tmp_path / "out.json", *args, GUARDRAIL_MODEL=str(tiny_vl_path))
    assert "GUARDRAIL_MODEL is set: no training" in proc.stdout
    assert "training" not in proc.stdout.replace("no training", "")
    assert result["guard"]["model"] == str(tiny_vl_path) and not result["guard"]["tiny"]
    assert not any(cache.rglob("config.json"))  # nothing was built or trained
    _check_rows(result, llamacpp=HAVE_LLAMA_CPP, paths={"fast", "reasoning"})
    assert "cascade mode" in proc.stdout
    if HAVE_LLAMA_CPP:
        assert Path(result["guard"]["gguf"]["model"]).is_relative_to(cache)
        assert "exporting to GGUF (q8_0)" in proc.stdout
    assert "TINY demo guard" not in proc.stdout


def test_without_export_gguf_the_llama_cpp_channel_says_how_to_get_one(tmp_path):
    demo = _load("demo_main_job", DEMO)
    console = demo.Console()
    given = demo.given_guard(
        console, str(tmp_path), tmp_path / "cache", export=False, max_new_tokens=None, evaluate=False
    )
    assert given.gguf is None and "--export-gguf" in given.gguf_note
    hub = demo.given_guard(
        console, "org/model", tmp_path / "cache", export=True, max_new_tokens=None, evaluate=False
    )
    assert hub.gguf is None and "local model directory" in hub.gguf_note


def test_main_job_says_why_a_model_cannot_be_loaded(tmp_path):
    proc = subprocess.run(
        [PYTHON, str(DEMO), "--cache-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=subprocess_env(GUARDRAIL_MODEL=str(tmp_path / "no-such-model"), HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "cannot load the guard" in proc.stdout and "no-such-model" in proc.stdout
