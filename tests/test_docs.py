"""Every code block of the docs runs, so the docs stay true.

Each page runs in a fresh process (``tests/docs_runner.py``) inside a working directory where the
names the docs use resolve offline:

- ``yueliu1999/GuardReasoner-VL-Eco-3B`` and the other hub ids are directories holding the tiny
  test guards (transformers reads a local directory of that name before it would ask the hub);
  ``my-guard`` is the tiny VL guard;
- ``gguf/`` holds what ``python -m guardrail export gguf --quant q8_0`` writes for a model named
  ``GuardReasoner-VL-Eco-3B`` (made by the real exporter from the tiny VL guard), and the
  Hugging Face cache (``HF_HUB_CACHE``) holds the same files as the repo
  ``your-org/GuardReasoner-VL-Eco-3B-GGUF``;
- ``photo.png``, ``image.png``, ``scan.png`` are pictures, ``prompt.txt`` a request,
  ``my_data.jsonl`` (with ``img/``) the labelled set the evaluation page describes;
- ``bench``, ``examples`` and ``training`` link to the checkout's folders, as for a user who
  runs the docs' commands from the repository root.

So the code in the docs is run as written; only the weights are tiny and random, which is why
the blocks print results rather than assert verdicts. The random guards never close their
answer, so every reasoning check runs to its ``max_new_tokens``: the docs pass 512 (advice that
holds for real guards too), and torch runs one thread (tiny matrices gain nothing from more, and
a busy machine makes idle threads spin). Blocks that need what a test machine cannot have (a GPU,
a vLLM server, a process that serves until stopped, a download) carry a ``doctest: skip``
comment with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, make_image, subprocess_env

pytestmark = pytest.mark.slow

PAGES = sorted(
    [
        REPO / "README.md",
        *REPO.glob("docs/**/*.md"),
        *REPO.glob("integrations/**/*.md"),
        REPO / "training/README.md",
    ]
)
VL_IDS = ["GuardReasoner-VL-3B", "GuardReasoner-VL-7B", "GuardReasoner-VL-Eco-3B", "GuardReasoner-VL-Eco-7B"]
TEXT_IDS = ["GuardReasoner-1B", "GuardReasoner-3B", "GuardReasoner-8B"]


def my_data() -> str:
    """The labelled set docs/evaluation.md prints under "JSONL schema" (its images are in img/)."""
    text = (REPO / "docs" / "evaluation.md").read_text()
    found = re.search(r"\*\*JSONL schema\*\*.*?```json\n(.*?)```", text, re.S)
    assert found, "docs/evaluation.md lost its JSONL example"
    return found.group(1)


@pytest.fixture(scope="session")
def docs_workdir(tmp_path_factory, tiny_vl_path, tiny_text_path) -> Path:
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed")
    work = tmp_path_factory.mktemp("docs")
    hub = work / "yueliu1999"
    hub.mkdir()
    for name in VL_IDS:
        (hub / name).symlink_to(tiny_vl_path, target_is_directory=True)
    for name in TEXT_IDS:
        (hub / name).symlink_to(tiny_text_path, target_is_directory=True)
    (work / "my-guard").symlink_to(tiny_vl_path, target_is_directory=True)
    from guardrail.export import export_gguf

    export_gguf(
        tiny_vl_path, work / "gguf", quant="q8_0", name="GuardReasoner-VL-Eco-3B",
        assume_pre_tokenizer="qwen2",  # the tiny tokenizer uses qwen2's split regex
    )  # fmt: skip
    from guardrail.testing import fill_hub_cache

    fill_hub_cache(work / "hf-cache", "your-org/GuardReasoner-VL-Eco-3B-GGUF",  # docs/hub.md, offline
                   {p.name: p for p in (work / "gguf").glob("*.gguf")})  # fmt: skip
    for name, color in (
        ("photo.png", (200, 40, 40)),
        ("image.png", (40, 200, 40)),
        ("scan.png", (250, 250, 250)),
    ):
        (work / name).write_bytes(make_image(size=(96, 64), color=color))
    (work / "prompt.txt").write_text("How do I bake bread at home?\n")
    (work / "img").mkdir()
    (work / "img" / "lock.png").write_bytes(make_image(size=(80, 80), color=(120, 120, 130)))
    (work / "img" / "meme.png").write_bytes(make_image(size=(120, 90), color=(240, 220, 40)))
    (work / "my_data.jsonl").write_text(my_data())
    for folder in ("bench", "examples", "training"):
        (work / folder).symlink_to(REPO / folder, target_is_directory=True)
    return work


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def has_blocks(page: Path) -> bool:
    sys.path.insert(0, str(REPO / "tests"))
    from docs_runner import blocks

    return bool(blocks(page.read_text()))


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=page_id)
def test_page_code_runs(page, docs_workdir):
    if not has_blocks(page):
        pytest.skip("no code blocks")
    env = subprocess_env(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PATH=os.pathsep.join([str(Path(PYTHON).parent), os.environ.get("PATH", "")]),
        OMP_NUM_THREADS="1",
        HF_HUB_CACHE=str(docs_workdir / "hf-cache"),
    )
    proc = subprocess.run(
        [PYTHON, str(REPO / "tests" / "docs_runner.py"), str(page), str(docs_workdir)],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-6000:]
    assert "RUN " in report or "SKIP" in report


def test_skips_are_few_and_explained():
    sys.path.insert(0, str(REPO / "tests"))
    from docs_runner import blocks

    total = skipped = 0
    for page in PAGES:
        if page.exists():
            found = blocks(page.read_text())
            total += len(found)
            skipped += sum(1 for b in found if b.skip)
    assert total >= 30
    assert skipped <= total // 3, f"{skipped} of {total} doc blocks are not run"
