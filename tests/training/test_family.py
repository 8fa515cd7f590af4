"""A base model of a family the recipe has not been checked on is refused unless forced, and
the profile chosen for a model is said, with why."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from guardrail.errors import ConfigurationError
from guardrail.training import SFTConfig
from guardrail.training.model import check_model_family, load_model


def test_an_unchecked_family_is_refused_before_any_weight_loads(tiny_vl_path, tmp_path, caplog):
    base = tmp_path / "qwen3-vl-base"
    shutil.copytree(tiny_vl_path, base)
    config = json.loads((base / "config.json").read_text())
    config.pop("guardrail_profile", None)
    config["model_type"] = "qwen3_vl"
    (base / "config.json").write_text(json.dumps(config))
    (base / "model.safetensors").write_bytes(b"not weights: never read")
    cfg = SFTConfig(model=str(base), output_dir=str(tmp_path / "o"))
    with pytest.raises(ConfigurationError) as info:
        load_model(cfg)
    message = str(info.value)
    assert "profile guardreasoner-vl (the default: no profile set)" in message
    assert "not been checked on the 'qwen3_vl' family (checked: qwen2_5_vl, qwen2_vl)" in message
    assert "allow_untested_model: true" in message
    forced = SFTConfig(model=str(base), output_dir=str(tmp_path / "o"), allow_untested_model=True)
    with caplog.at_level(logging.WARNING, logger="guardrail.training"):
        check_model_family(forced, config)
    assert any("training anyway" in r.getMessage() for r in caplog.records)


def test_the_chosen_profile_is_logged_and_a_mismatch_names_the_right_one(tiny_vl_path, caplog):
    config = json.loads((tiny_vl_path / "config.json").read_text())
    with caplog.at_level(logging.INFO, logger="guardrail.training"):
        line = check_model_family(SFTConfig(model=str(tiny_vl_path), output_dir="o"), config)
    assert line.endswith("(model_type 'qwen2_5_vl')") and "profile guardreasoner-vl" in line
    with pytest.raises(ConfigurationError, match="set sft.profile: guardreasoner-vl"):
        check_model_family(
            SFTConfig(model="m", output_dir="o", profile="guardreasoner"), {"model_type": "qwen2_5_vl"}
        )
    line = check_model_family(
        SFTConfig(model="m", output_dir="o", profile="guardreasoner"), {"model_type": "llama"}
    )
    assert "(set by sft.profile)" in line
