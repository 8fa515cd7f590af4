"""Every engine launch recipe under integrations/ binds 127.0.0.1 unless told otherwise.

Engines differ (vLLM listens on every interface by default), so each script must say so itself.
The scripts are run for real with stand-ins for the engines on PATH that print their arguments.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

RECIPES = sorted((REPO / "integrations").rglob("*.sh"))
ENGINES = ("python", "python3", "vllm", "llama-server", "sglang")
# per recipe, the variants to run (environment); a recipe not listed runs once with BASE_ENV
VARIANTS = {"llamacpp-server": [{"SERVER": "python"}, {"SERVER": "native"}]}
BASE_ENV = {"MODEL": "guard.gguf", "MMPROJ": "mmproj.gguf"}


def test_the_known_recipes_are_all_found():
    assert {p.parent.name for p in RECIPES} >= {"vllm", "sglang", "llamacpp-server"}


@pytest.mark.parametrize("script", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_states_a_loopback_default(script):
    text = script.read_text()
    assert re.search(r"\$\{HOST:-127\.0\.0\.1\}", text), f"{script}: no HOST default of 127.0.0.1"
    assert "0.0.0.0" not in re.sub(r"(?m)#.*$", "", text), f"{script}: binds every interface"


def run_recipe(script: Path, tmp_path: Path, **env: str) -> list[str]:
    """Run ``script`` with engine stand-ins; the arguments the engine received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ENGINES:
        stub = bin_dir / name
        stub.write_text('#!/bin/sh\nfor a in "$0" "$@"; do printf "%s\\n" "$a"; done\n')
        stub.chmod(0o755)
    full = {k: v for k, v in os.environ.items() if k not in ("HOST", "API_KEY", "SERVER")}
    full.update(BASE_ENV, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env)
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=full, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def host_of(argv: list[str]) -> str:
    hosts = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--host"]
    assert len(hosts) == 1, f"expected one --host, got {argv}"
    return hosts[0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_binds_loopback_unless_host_is_set(script, tmp_path):
    for variant in VARIANTS.get(script.parent.name, [{}]):
        argv = run_recipe(script, tmp_path, **variant)
        assert Path(argv[0]).parent == tmp_path / "bin", argv  # an engine stand-in ran
        assert host_of(argv) == "127.0.0.1", (variant, argv)
        assert not any("key" in a.lower() for a in argv), argv  # no key unless asked for
        argv = run_recipe(script, tmp_path, HOST="10.1.2.3", API_KEY="k-123", **variant)
        assert host_of(argv) == "10.1.2.3"
        flag = argv.index("k-123") - 1
        assert argv[flag] in ("--api-key", "--api_key"), argv  # exposed: the key goes with it


def test_llamacpp_python_recipe_keeps_the_prompt_prefix(tmp_path):
    """The python variant turns the launcher's prefix reuse on (llama-cpp-python alone clears
    its context on every chat request)."""
    script = next(p for p in RECIPES if p.parent.name == "llamacpp-server")
    argv = run_recipe(script, tmp_path, SERVER="python")
    assert "guardrail.integrations.llamacpp_server" in argv, argv
    assert argv[argv.index("--prefix_cache") + 1] == "true", argv


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_omni_recipe_keeps_the_frames_the_guard_sampled(tmp_path):
    """vLLM must use every frame guardrail sends, unresized, and take as many clips as the
    guard's limits allow: the flags carry the profile's own numbers."""
    import json

    from guardrail.inputs import InputLimits
    from guardrail.profiles.guardreasoner_omni import OMNI_IMAGE_MAX_PIXELS, OMNI_VIDEO_SAMPLING

    argv = run_recipe(REPO / "integrations" / "vllm-omni" / "serve.sh", tmp_path)
    flag = {a: json.loads(argv[i + 1]) for i, a in enumerate(argv[:-1])
            if a in ("--limit-mm-per-prompt", "--media-io-kwargs", "--mm-processor-kwargs")}  # fmt: skip
    assert flag["--media-io-kwargs"] == {"video": {"num_frames": -1}}
    pixels = flag["--mm-processor-kwargs"]
    assert pixels["min_pixels"] <= OMNI_VIDEO_SAMPLING.min_pixels
    assert pixels["max_pixels"] == OMNI_IMAGE_MAX_PIXELS >= OMNI_VIDEO_SAMPLING.max_pixels
    limits = InputLimits()
    assert flag["--limit-mm-per-prompt"] == {"image": limits.max_images, "video": limits.max_videos,
                                             "audio": limits.max_audios}  # fmt: skip
    assert argv[1:3] == ["serve", "guard.gguf"]  # MODEL is honoured; the default is the 7B guard
    script = (REPO / "integrations" / "vllm-omni" / "serve.sh").read_text()
    assert 'MODEL="${MODEL:-zhu-thu-22/GuardReasoner-Omni-7B}"' in script
