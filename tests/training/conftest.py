"""Fixtures of the training tests: the tiny corpus shipped with the tiny recipe, and one SFT
model trained on a handful of its samples, shared by the tests that need a trained guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO

TINY_DATA = REPO / "training" / "data" / "tiny" / "train.jsonl"
TINY_RECIPE = REPO / "training" / "tiny.yaml"
# Four text samples (with and without responses) and two image-only ones whose labels differ
# only by the picture: learning them needs the text, the images and the template all wired.
HANDFUL = ("tiny-00", "tiny-01", "tiny-07", "tiny-08", "tiny-10", "tiny-11")


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_rows(ids: tuple[str, ...] | None = None) -> list[dict]:
    """Rows of the tiny corpus with absolute image paths (so they can be written anywhere)."""
    rows = [json.loads(line) for line in TINY_DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["images"] = [str((TINY_DATA.parent / p).resolve()) for p in row.get("images", [])]
    if ids is not None:
        rows = [r for r in rows if r["id"] in ids]
    return rows


@pytest.fixture(autouse=True)
def one_torch_thread(request):
    """Tiny models run as fast on one thread, and one thread does not slow to a crawl when the
    machine is shared (the training commands do the same with num_threads: 1)."""
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def handful_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("handful") / "handful.jsonl", tiny_rows(HANDFUL))


def sft_settings(**overrides):
    """Settings that make the tiny model learn a handful of samples in seconds."""
    settings = dict(
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        max_steps=80,
        per_device_train_batch_size=6,
        max_length=1024,
        bf16=False,
        logging_steps=10,
        save_steps=1000,
        disable_tqdm=True,
        num_threads=1,
        resume="never",
        seed=0,
    )
    settings.update(overrides)
    return settings


@pytest.fixture(scope="session")
def sft_model(tiny_vl_path, handful_file, tmp_path_factory) -> Path:
    """The tiny VL model after R-SFT on the handful (trained once per session)."""
    from guardrail.training import SFTConfig, train_sft

    out = tmp_path_factory.mktemp("sft") / "model"
    result = train_sft(
        SFTConfig(model=str(tiny_vl_path), data=[str(handful_file)], output_dir=str(out), **sft_settings())
    )
    assert result.global_step == 80
    return out
