"""The Hugging Face Hub, without the internet.

- Resolving GGUF files (``Guard.from_gguf("org/repo", filename="*Q4_K_M.gguf")``) against a
  Hugging Face cache the test fills itself, in the real layout (``models--org--repo/blobs``,
  ``snapshots/<commit>/`` links, ``refs/<name>``), read by huggingface_hub's own
  ``hf_hub_download`` in offline mode (conftest sets ``HF_HUB_OFFLINE=1``); then the tiny guard's
  real GGUF files loaded and run from such a cache.
- Uploading (``python -m guardrail.training push``, ``push_to_hub:`` in a recipe, ``export gguf
  --push``) against :mod:`tests.hub_server`, a local stand-in for the Hub API on 127.0.0.1
  (``HF_ENDPOINT``) that records what huggingface_hub sends: the card, its metadata, the files
  and how each was sent (inline, or Git LFS for weights). The commands run in a subprocess, as a
  user runs them: huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when imported.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from guardrail import BackendError, ConfigurationError, Guard, HubError
from guardrail.hub import resolve_gguf
from guardrail.testing import fill_hub_cache
from tests.conftest import PYTHON, subprocess_env
from tests.hub_server import TOKEN, HubStub

pytest.importorskip("huggingface_hub", reason="the hub extra is not installed")

MAIN = "a" * 40
OLD = "b" * 40


def fill_cache(root: Path, repo_id: str, commit: str, files: dict, refs: tuple[str, ...] = ("main",)) -> Path:
    return fill_hub_cache(root, repo_id, files, commit=commit, refs=refs)


@pytest.fixture
def cache(tmp_path) -> Path:
    root = tmp_path / "hf-cache"
    fill_cache(root, "org/guard-GGUF", MAIN, {
        "guard-Q4_K_M.gguf": b"q4", "guard-Q8_0.gguf": b"q8", "mmproj-guard-f16.gguf": b"mm",
        "README.md": b"# card", "extra/guard-IQ2_XS.gguf": b"iq2",
    })  # fmt: skip
    fill_cache(root, "org/guard-GGUF", OLD, {"guard-Q4_K_M.gguf": b"old q4"}, refs=("v1",))
    return root


# ------------------------------------------------------------------------- resolving, offline
def test_globs_pick_one_file_of_the_cached_snapshot(cache):
    snapshot = cache / "models--org--guard-GGUF" / "snapshots" / MAIN
    model, mmproj = resolve_gguf("org/guard-GGUF", "*mmproj*", filename="*Q4_K_M.gguf", cache_dir=cache)
    assert model == snapshot / "guard-Q4_K_M.gguf" and model.read_bytes() == b"q4"
    assert mmproj == snapshot / "mmproj-guard-f16.gguf"
    # case-insensitive globs, exact names, sub-folders; the only mmproj is found without asking
    assert resolve_gguf("org/guard-GGUF", filename="*q8_0.gguf", cache_dir=cache) == (
        snapshot / "guard-Q8_0.gguf", snapshot / "mmproj-guard-f16.gguf")  # fmt: skip
    assert (
        resolve_gguf("org/guard-GGUF", False, filename="extra/guard-IQ2_XS.gguf", cache_dir=cache)[1] is None
    )
    # "*f16.gguf" would also match the mmproj: a model pattern looks among the models only
    with pytest.raises(HubError, match="no file") as info:
        resolve_gguf("org/guard-GGUF", filename="*f16.gguf", cache_dir=cache)
    assert info.value.reason == "no_match" and "mmproj-guard-f16.gguf" not in info.value.candidates


def test_a_pattern_must_match_exactly_one_file(cache):
    with pytest.raises(HubError) as info:
        resolve_gguf("org/guard-GGUF", cache_dir=cache)  # three model files: which one?
    err = info.value
    assert err.reason == "ambiguous" and err.repo_id == "org/guard-GGUF"
    assert set(err.candidates) == {"guard-Q4_K_M.gguf", "guard-Q8_0.gguf", "extra/guard-IQ2_XS.gguf"}
    assert "give filename=" in str(err) and "guard-Q8_0.gguf" in str(err) and str(cache) in str(err)
    with pytest.raises(HubError) as info:
        resolve_gguf("org/guard-GGUF", filename="*Q5_K_M*", cache_dir=cache)
    assert info.value.reason == "no_match" and "'*Q5_K_M*'" in str(info.value)
    assert "guard-Q4_K_M.gguf" in str(info.value) and "README.md" not in info.value.candidates
    with pytest.raises(HubError, match="mmproj .* matches 4 files") as info:
        resolve_gguf("org/guard-GGUF", "*.gguf", filename="*Q4_K_M.gguf", cache_dir=cache)
    assert info.value.reason == "ambiguous"  # the mmproj pattern matched the model too
    assert isinstance(info.value, ConfigurationError)  # a setup mistake, caught with the others


def test_revisions_tags_and_commits(cache):
    model, _ = resolve_gguf("org/guard-GGUF", False, filename="*Q4_K_M.gguf", revision="v1", cache_dir=cache)
    assert model.read_bytes() == b"old q4" and OLD in model.parts
    model, _ = resolve_gguf("org/guard-GGUF", False, filename="*Q4_K_M.gguf", revision=OLD, cache_dir=cache)
    assert model.read_bytes() == b"old q4"
    with pytest.raises(HubError) as info:
        resolve_gguf("org/guard-GGUF", filename="*Q4_K_M.gguf", revision="v2", cache_dir=cache)
    message = str(info.value)
    assert info.value.reason == "not_cached" and "revision v2" in message and "HF_HUB_OFFLINE" in message
    assert "cached revisions: main, v1" in message and str(cache) in message


def test_offline_with_nothing_cached_says_where_it_looked(tmp_path):
    with pytest.raises(HubError) as info:
        resolve_gguf("org/absent", filename="*.gguf", cache_dir=tmp_path / "empty")
    message = str(info.value)
    assert info.value.reason == "not_cached" and "org/absent (revision main)" in message
    assert str(tmp_path / "empty") in message and "hf download org/absent" in message
    assert "nothing of it is cached" in message


def test_the_command_line_takes_repo_ids(tmp_path):
    """A fresh process, the default cache (``HF_HUB_CACHE``), the llama.cpp backend by name."""
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    env = subprocess_env(HF_HUB_CACHE=str(tmp_path / "hub"))
    args = [
        "-m",
        "guardrail",
        "check",
        "--backend",
        "llamacpp",
        "--model",
        "org/absent-GGUF",
        "--prompt",
        "hi",
    ]
    proc = run(args, env)
    assert proc.returncode == 2 and "HubError" in proc.stderr
    assert (
        f"org/absent-GGUF (revision main) is not in the Hugging Face cache at {tmp_path / 'hub'}"
        in proc.stderr
    )


def test_an_interrupted_download_is_not_a_file(cache):
    snapshot = cache / "models--org--guard-GGUF" / "snapshots" / MAIN
    (snapshot / "guard-Q2_K.gguf").symlink_to("../../blobs/never-finished")
    with pytest.raises(HubError) as info:
        resolve_gguf("org/guard-GGUF", filename="*Q2_K.gguf", cache_dir=cache)
    assert info.value.reason == "no_match"


def test_local_paths_stay_local(tmp_path, cache, monkeypatch):
    with pytest.raises(ConfigurationError, match="no such file") as info:
        Guard.from_gguf(tmp_path / "missing.gguf")
    assert not isinstance(info.value, HubError)
    for looks_local in ("org/model.gguf", "./org/repo", str(tmp_path / "a" / "b")):
        with pytest.raises(ConfigurationError, match="no such file") as info:
            resolve_gguf(looks_local)
        assert not isinstance(info.value, HubError), looks_local
    file = tmp_path / "m.gguf"
    file.write_bytes(b"x")
    assert resolve_gguf(str(file)) == (file, None)
    with pytest.raises(ConfigurationError, match="apply to Hugging Face repos"):
        resolve_gguf(file, revision="main")
    # a local directory named like a repo is a directory; filename= picks in it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "repo").mkdir(parents=True)
    (tmp_path / "org" / "repo" / "x-Q4_K_M.gguf").write_bytes(b"x")
    (tmp_path / "org" / "repo" / "x-Q8_0.gguf").write_bytes(b"x")
    assert resolve_gguf("org/repo", filename="*q8_0*") == (Path("org/repo/x-Q8_0.gguf"), None)


def test_from_pretrained_offline_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(BackendError, match="cannot load model") as info:
        Guard.from_pretrained("org/not-downloaded")
    message = str(info.value)
    assert "org/not-downloaded (revision main) is not in the Hugging Face cache" in message
    assert str(tmp_path / "hub") in message and "HF_HUB_OFFLINE=1" in message
    with pytest.raises(BackendError, match="there is no directory .*nothing-here"):
        Guard.from_pretrained(tmp_path / "nothing-here")  # a local path: said so, no hub error


@pytest.mark.slow
def test_the_tiny_guard_runs_from_a_cached_hub_repo(tiny_gguf, tmp_path):
    """The real files, the real loader: what a user gets after ``hf download`` then offline."""
    from PIL import Image

    root = tmp_path / "hf-cache"
    snapshot = fill_cache(root, "org/tiny-GGUF", MAIN, {tiny_gguf.model.name: tiny_gguf.model,
                                                       tiny_gguf.mmproj.name: tiny_gguf.mmproj})  # fmt: skip
    guard = Guard.from_gguf("org/tiny-GGUF", filename="*f32.gguf", mmproj="*mmproj*", cache_dir=root,
                            n_ctx=4096, n_threads=2, max_new_tokens=8)  # fmt: skip
    try:
        assert Path(guard.backend.mmproj) == snapshot / tiny_gguf.mmproj.name
        assert str(snapshot) in guard.backend.model_name
        verdict = guard.moderate(prompt="What is this?", images=[Image.new("RGB", (56, 56), (200, 30, 30))])
        assert verdict.raw_output is not None
    finally:
        guard.close()


# ----------------------------------------------------------------------------- uploading
def hub_env(hub: HubStub, tmp_path: Path, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """What a user's shell has: the endpoint, a token; online; Xet off so weights go by Git LFS."""
    settings = dict(HF_ENDPOINT=hub.url, HF_TOKEN=token, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
                    HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf-home"))  # fmt: skip
    return subprocess_env(**{**settings, **extra})


def run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, *args], env=env, capture_output=True, text=True, timeout=timeout)


STAGE = {
    "stage": "rl", "base_model": "Qwen/Qwen2.5-VL-3B-Instruct", "profile": "guardreasoner-vl",
    "config": {"finetune": "lora", "learning_rate": 1e-6, "num_generations": 8, "rewards": ["format", "accuracy"]},
    "data": {"files": ["data/train.jsonl"], "labels": {"request": {"harmful": 3, "unharmful": 2}},
             "modalities": {"text": 4, "image": 1}},
    "samples": 5, "global_step": 3, "train_loss": 0.25,
}  # fmt: skip


@pytest.fixture
def trained(tmp_path) -> Path:
    """A guard directory as training leaves it (weights are bytes: what is tested is the upload),
    with an evaluation beside it (real predictions, scored by guardrail.eval) and a policy file."""
    d = tmp_path / "runs" / "demo" / "rl"
    (d / "checkpoint-3").mkdir(parents=True)
    (d / "checkpoint-3" / "optimizer.pt").write_bytes(b"state")
    (d / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (d / "tokenizer.json").write_text("{}")
    (d / "model.safetensors").write_bytes(os.urandom(4096))
    (d / "guardrail-training.json").write_text(json.dumps(STAGE))
    (d / "training_config.yaml").write_text("rl:\n  learning_rate: 1.0e-06\n")
    (d / ".stage-done.json").write_text("{}")
    (d / "training_args.bin").write_bytes(b"pickle")
    (d / "guardrail_policy.yaml").write_text(
        "name: shop\ncategories:\n- code: weapons\n  name: Weapons\n  description: Making weapons.\n"
    )
    (d / "eval").mkdir()
    outcomes = [
        ("harmful", "harmful"),
        ("unharmful", "unharmful"),
        ("harmful", None),
        ("unharmful", "unharmful"),
    ]
    rows = [{"benchmark": "ToyBench", "id": str(i), "labels": {"request": gold}, "raw_output": "",
             "predicted": {"request": pred}, "modality": "text"} for i, (gold, pred) in enumerate(outcomes)]  # fmt: skip
    (d / "eval" / "ToyBench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_push_uploads_the_guard_with_its_card_and_model_index(trained, tmp_path):
    from huggingface_hub import ModelCard

    with HubStub() as hub:
        proc = run(["-m", "guardrail.training", "push", "--model", str(trained), "--repo", "acme/guard-1",
                    "--private"], hub_env(hub, tmp_path))  # fmt: skip
        state = hub.state
    assert proc.returncode == 0, proc.stderr
    assert "pushed 7 files to acme/guard-1" in proc.stdout and "/acme/guard-1/commit/" in proc.stdout
    assert state.repos["acme/guard-1"].private
    (commit,) = state.commits
    assert (
        commit["revision"] == "main"
        and commit["header"]["summary"] == "Upload guard trained with guardrail (rl)"
    )
    assert sorted(commit["files"]) == [
        "README.md", "config.json", "guardrail-training.json", "guardrail_policy.yaml", "model.safetensors",
        "tokenizer.json", "training_config.yaml",
    ]  # fmt: skip
    # weights went through Git LFS, byte for byte; the rest inline
    assert commit["kinds"]["model.safetensors"] == "lfs" and commit["kinds"]["README.md"] == "regular"
    assert commit["files"]["model.safetensors"] == (trained / "model.safetensors").read_bytes()
    writes = [
        r for r in state.requests if r["method"] in ("POST", "PUT") and "validate-yaml" not in r["path"]
    ]
    assert writes and all(r["auth"] == f"Bearer {TOKEN}" for r in writes if "lfs-upload" not in r["path"])

    card_text = commit["files"]["README.md"].decode()
    assert state.yaml_checked == [card_text]  # the client had the Hub check the metadata first
    card = ModelCard(card_text)  # huggingface_hub's own reader
    assert card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct" and "guardreasoner-vl" in card.data.tags
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    # 4 samples: tp, tn, a parse failure on a harmful one (strict: wrong), tn -> P 100, R 50
    assert results == {
        ("ToyBench", "f1"): 66.67,
        ("ToyBench", "precision"): 100.0,
        ("ToyBench", "recall"): 50.0,
    }
    assert card.data.eval_results[0].task_type == "text-classification"
    assert card.data.model_name == "guard-1"
    body = card.text
    assert 'Guard.from_pretrained("acme/guard-1")' in body and "learning_rate=1e-06" in body
    assert "num_generations=8" in body and "5 samples from `data/train.jsonl`" in body
    assert "| `weapons` | Weapons | block | Making weapons. |" in body and "| ToyBench | request | 4 | 66.67 |" in body
    # the local directory is unchanged
    assert not (trained / "README.md").exists()


def test_push_to_a_branch_and_the_ways_it_fails(trained, tmp_path):
    with HubStub() as hub:
        ok = run(["-m", "guardrail.training", "push", "--model", str(trained), "--repo", "acme/guard-1",
                  "--revision", "candidate", "--exclude", "tokenizer.json"], hub_env(hub, tmp_path))  # fmt: skip
        bad_token = run(["-m", "guardrail.training", "push", "--model", str(trained), "--repo", "acme/guard-2"],
                        hub_env(hub, tmp_path, token="hf_wrong"))  # fmt: skip
        offline = run(["-m", "guardrail.training", "push", "--model", str(trained), "--repo", "acme/guard-3"],
                      hub_env(hub, tmp_path, HF_HUB_OFFLINE="1"))  # fmt: skip
        not_trained = run(["-m", "guardrail.training", "push", "--model", str(tmp_path), "--repo", "acme/guard-4"],
                          hub_env(hub, tmp_path))  # fmt: skip
        state = hub.state
    assert ok.returncode == 0, ok.stderr
    (commit,) = state.commits
    assert commit["revision"] == "candidate" and "tokenizer.json" not in commit["files"]
    assert "POST /api/models/acme/guard-1/branch/candidate" in state.paths()
    assert not state.repos["acme/guard-1"].private and state.repos["acme/guard-1"].branches["main"] == {}

    assert bad_token.returncode == 2 and "HubError" in bad_token.stderr
    assert "refused the token (HTTP 401)" in bad_token.stderr and "HF_TOKEN" in bad_token.stderr
    assert "hf_wrong" not in bad_token.stderr and "acme/guard-2" not in state.repos
    assert offline.returncode == 2 and "the Hub is offline (HF_HUB_OFFLINE=1)" in offline.stderr
    assert not_trained.returncode == 2 and "not a guard trained by guardrail.training" in not_trained.stderr
    assert len(state.commits) == 1


@pytest.mark.slow
def test_recipe_push_to_hub_uploads_the_final_model(tiny_vl_path, tmp_path):
    from tests.training.conftest import HANDFUL, tiny_rows, write_rows

    data = write_rows(tmp_path / "d.jsonl", tiny_rows(HANDFUL))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {tiny_vl_path}\noutput_dir: {tmp_path / 'runs'}\ndata: [{data}]\nstages: [sft]\n"
        "push_to_hub: acme/tiny-guard\nhub_private: true\n"
        "sft: {max_steps: 1, per_device_train_batch_size: 2, bf16: false, disable_tqdm: true, num_threads: 1, "
        "save_steps: 1, logging_steps: 1}\n"
    )
    with HubStub() as hub:
        proc = run(
            ["-m", "guardrail.training", "run", "--config", str(recipe)], hub_env(hub, tmp_path), timeout=600
        )
        state = hub.state
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pushed to acme/tiny-guard:" in proc.stdout
    (commit,) = state.commits
    files = commit["files"]
    assert {"README.md", "config.json", "model.safetensors", "guardrail-training.json"} <= set(files)
    assert (
        not any(name.startswith(("checkpoint-", ".")) for name in files) and "training_args.bin" not in files
    )
    assert files["model.safetensors"] == (tmp_path / "runs" / "sft" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    # the tiny base is a local directory: no base_model metadata (the Hub takes repo ids only)
    assert "base_model:" not in card.split("---")[1] and f"fine-tuned from `{tiny_vl_path}`" in card
    assert 'Guard.from_pretrained("acme/tiny-guard")' in card and state.repos["acme/tiny-guard"].private


@pytest.mark.slow
def test_export_push_then_from_gguf_downloads_it(tiny_vl_path, tmp_path):
    """``export gguf --push`` uploads the files and a card; ``Guard.from_gguf`` online then lists
    the repo and downloads them through huggingface_hub into a fresh cache, and runs them."""
    out = tmp_path / "gguf"
    with HubStub() as hub:
        env = hub_env(hub, tmp_path)
        proc = run(["-m", "guardrail", "export", "gguf", "--model", str(tiny_vl_path), "--out", str(out),
                    "--quant", "f32", "--name", "tiny", "--push", "acme/tiny-GGUF", "--base-model", "acme/tiny"], env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        (commit,) = hub.state.commits
        assert sorted(commit["files"]) == ["README.md", "mmproj-tiny-f32.gguf", "tiny-f32.gguf"]
        assert commit["kinds"]["tiny-f32.gguf"] == "lfs"
        card = commit["files"]["README.md"].decode()
        assert 'base_model: "acme/tiny"' in card and "base_model_relation: quantized" in card
        assert 'Guard.from_gguf("acme/tiny-GGUF", filename="*f32.gguf", mmproj="*mmproj*")' in card
        script = (
            "from guardrail import Guard\n"
            f"g = Guard.from_gguf('acme/tiny-GGUF', filename='*f32.gguf', mmproj='*mmproj*', cache_dir={str(tmp_path / 'dl')!r},"
            " n_ctx=2048, n_threads=2, max_new_tokens=4)\n"
            "print('MMPROJ', g.backend.mmproj)\n"
            "print('OUTPUT', g.moderate(prompt='hi').raw_output is not None)\n"
        )
        loaded = run(["-c", script], env)
        paths = hub.state.paths()
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert (
        "OUTPUT True" in loaded.stdout and str(tmp_path / "dl" / "models--acme--tiny-GGUF") in loaded.stdout
    )
    assert "GET /api/models/acme/tiny-GGUF/revision/main" in paths
    assert any(p.startswith("GET /acme/tiny-GGUF/resolve/") and p.endswith("tiny-f32.gguf") for p in paths)
    downloaded = next((tmp_path / "dl").rglob("snapshots/*/tiny-f32.gguf"))
    assert downloaded.read_bytes() == (out / "tiny-f32.gguf").read_bytes()
