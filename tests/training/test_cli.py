"""``python -m guardrail.training``: YAML recipes merged with flags (flags win), and a whole run."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from guardrail.errors import ConfigurationError
from guardrail.training.cli import main
from guardrail.training.recipe import RecipeConfig, load_recipe, resolve_stage, run_pipeline, stage_config
from tests.conftest import PYTHON, REPO, subprocess_env
from tests.training.conftest import TINY_RECIPE

RECIPES = sorted((REPO / "training").glob("*.yaml"))


def printed(capsys, argv) -> dict:
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_flags_override_the_recipe(capsys):
    cfg = printed(
        capsys,
        [
            "sft",
            "--config",
            str(TINY_RECIPE),
            "--model",
            "base",
            "--max-steps",
            "5",
            "--learning_rate",
            "0.01",
            "--print-config",
        ],
    )
    assert cfg["model"] == "base" and cfg["max_steps"] == 5 and cfg["learning_rate"] == 0.01
    assert cfg["lr_scheduler_type"] == "cosine" and cfg["num_train_epochs"] == 40  # from the sft section
    assert (
        cfg["data"] == ["training/data/tiny/train.jsonl"] and cfg["output_dir"] == "runs/tiny/sft"
    )  # inherited
    assert cfg["num_threads"] == 1 and cfg["seed"] == 0  # top-level keys every stage takes
    cfg = printed(
        capsys,
        ["rl", "--config", str(TINY_RECIPE), "--data", "a.jsonl", "b.jsonl", "--bf16", "--print-config"],
    )
    assert cfg["data"] == ["a.jsonl", "b.jsonl"] and cfg["bf16"] is True
    assert cfg["model"] == "runs/tiny/sft"  # RL starts from the SFT model
    cfg = printed(
        capsys, ["augment", "--output_dir", "x", "--fraction", "0.5", "--print-config"]
    )  # no recipe at all
    assert cfg["output_dir"] == "x" and cfg["fraction"] == 0.5


def test_run_takes_top_level_and_dotted_stage_flags(capsys):
    out = printed(
        capsys,
        [
            "run",
            "--config",
            str(TINY_RECIPE),
            "--model",
            "base",
            "--output-dir",
            "elsewhere",
            "--sft.max_steps",
            "7",
            "--rl.num_generations",
            "2",
            "--print-config",
        ],
    )
    assert out["recipe"]["model"] == "base"
    assert out["sft"]["max_steps"] == 7 and out["sft"]["output_dir"] == "elsewhere/sft"
    assert out["sample"]["model"] == "elsewhere/sft"
    assert out["augment"]["data"] == ["elsewhere/sample/hard.jsonl"]
    assert out["rl"]["data"] == ["elsewhere/augment/augmented.jsonl"] and out["rl"]["num_generations"] == 2


def test_mistakes_exit_2_with_a_message(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  learning_rat: 1.0\n")
    assert main(["sft", "--config", str(bad), "--print-config"]) == 2
    assert "unknown option(s) for sft: learning_rat" in capsys.readouterr().err
    assert main(["sft", "--max-steps", "many", "--print-config"]) == 2
    assert "sft.max_steps: expected int" in capsys.readouterr().err
    assert main(["rl", "--clip-schedule", "wobbly", "--print-config"]) == 2
    assert "rl.clip_schedule must be one of constant, linear, cosine" in capsys.readouterr().err
    assert main(["sft", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read recipe" in capsys.readouterr().err
    assert (
        main(["sft", "--data", str(tmp_path / "none.jsonl"), "--model", "m", "--output-dir", str(tmp_path)])
        == 2
    )
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_shipped_recipe_resolves_to_valid_stage_configs(recipe):
    raw = load_recipe(recipe)
    cfg = RecipeConfig.from_dict(raw)
    for stage in cfg.stages:
        stage_config(cfg.to_dict(), stage)  # raises ConfigurationError on any mistake


def test_published_recipes_follow_the_paper():
    for name, beta in [
        ("guardreasoner-vl-3b", 1.0),
        ("guardreasoner-vl-7b", 1.0),
        ("guardreasoner-vl-eco-3b", 1 / 6),
        ("guardreasoner-vl-eco-7b", 1 / 6),
    ]:
        raw = load_recipe(REPO / "training" / f"{name}.yaml")
        sft, sample, rl = (stage_config(raw, s) for s in ("sft", "sample", "rl"))
        assert (sft.learning_rate, sft.lr_scheduler_type, sft.num_train_epochs, sft.max_length) == (
            5e-5,
            "cosine",
            3.0,
            2048,
        )
        assert sft.per_device_train_batch_size * sft.gradient_accumulation_steps * 8 == 192  # on 8 GPUs
        assert (sample.k, sample.temperature, sample.top_p) == (4, 1.0, 0.95)
        assert (
            rl.num_generations,
            rl.temperature,
            rl.learning_rate,
            rl.weight_decay,
            rl.epsilon,
            rl.beta,
        ) == (16, 1.2, 1e-6, 1e-2, 0.2, 0.0)
        assert rl.length_beta == pytest.approx(beta)
        assert rl.updates_per_generation() == 2  # rollout batch 512 prompts, updated in batches of 256
        completions_per_update = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * 8
        assert completions_per_update == 256 * 16
        assert raw["model"].startswith("Qwen/Qwen2.5-VL-")


def test_stage_resolution_uses_previous_outputs():
    recipe = {"model": "base", "output_dir": "r", "data": ["d.jsonl"], "seed": 3, "rl": {"model": "other"}}
    assert resolve_stage(recipe, "sft") == {
        "seed": 3,
        "output_dir": "r/sft",
        "model": "base",
        "data": ["d.jsonl"],
    }
    assert resolve_stage(recipe, "sample")["model"] == "r/sft"
    assert resolve_stage(recipe, "augment")["data"] == ["r/sample/hard.jsonl"]
    assert resolve_stage(recipe, "rl")["model"] == "other"
    with pytest.raises(ConfigurationError, match="unknown stage"):
        resolve_stage(recipe, "eval")
    with pytest.raises(ConfigurationError, match="stages"):
        RecipeConfig(stages=["sft", "deploy"])


@pytest.mark.slow
def test_tiny_recipe_runs_end_to_end_from_the_command_line(tiny_vl_path, tmp_path):
    """The tiny recipe as the demo runs it (fewer steps): every stage, then a guard that loads."""
    out = tmp_path / "run"
    cmd = [
        PYTHON, "-m", "guardrail.training", "run", "--config", str(TINY_RECIPE),
        "--model", str(tiny_vl_path), "--output-dir", str(out),
        "--sft.max_steps", "30", "--sft.disable_tqdm", "true", "--rl.max_steps", "2", "--rl.disable_tqdm", "true",
        "--sample.disable_tqdm", "true",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"final guard model: {out / 'rl'}" in proc.stdout
    for stage in ("sft", "sample", "augment", "rl"):
        assert (out / stage / ".stage-done.json").exists(), stage
    stats = json.loads((out / "sample" / "stats.json").read_text())
    assert stats["samples"] == 16 and stats["kept"] >= 8  # min_keep of the tiny recipe
    aug = json.loads((out / "augment" / "stats.json").read_text())
    assert aug["originals"] == stats["kept"] and aug["augmented"] >= 1
    rl_metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in rl_metrics if "loss" in m] == [1, 2]

    from guardrail import Guard

    verdict = Guard.from_pretrained(out / "rl", max_new_tokens=96, device="cpu").moderate(
        prompt="How do I bake bread at home?"
    )
    assert verdict.raw_output
    # a second run with the same settings finds every stage done and redoes nothing (progress bars
    # do not shape the result) ...
    raw = load_recipe(TINY_RECIPE)
    raw.update(model=str(tiny_vl_path), output_dir=str(out))
    raw["sft"]["max_steps"], raw["rl"]["max_steps"] = 30, 2
    result = run_pipeline(raw)
    assert result.skipped == ("sft", "sample", "augment", "rl") and result.final_model == str(out / "rl")
    assert result.stages["sft"]["global_step"] == 30
    # ... and the recipe as shipped (80 SFT steps) is not served the 30-step model
    with pytest.raises(ConfigurationError, match=r"sft.max_steps: 30 -> -1[\s\S]*--redo sft"):
        run_pipeline({**load_recipe(TINY_RECIPE), "model": str(tiny_vl_path), "output_dir": str(out)})


def test_configs_rewards_and_the_command_line_import_no_heavy_library():
    """Configs are checked (and --help shown) before torch, transformers or TRL load."""
    code = (
        "import sys, guardrail.training as t, guardrail.training.rewards, guardrail.training.clipping\n"
        "from guardrail.training import SFTConfig, RLConfig, RejectionConfig, AugmentConfig, RecipeConfig\n"
        "from guardrail.training.cli import build_parser\n"
        "build_parser(); RLConfig(model='m', output_dir='o')\n"
        "print(','.join(m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported: {proc.stdout}"


def test_the_old_pipeline_module_still_works_with_a_deprecation_warning():
    from guardrail.training import pipeline, recipe

    with pytest.warns(DeprecationWarning, match="guardrail.training.recipe"):
        assert pipeline.run_pipeline is recipe.run_pipeline
    with pytest.warns(DeprecationWarning):
        from guardrail.training.pipeline import RecipeConfig as Old
    assert Old is recipe.RecipeConfig
    with pytest.raises(AttributeError):
        pipeline.no_such_name  # noqa: B018
