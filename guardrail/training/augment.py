"""Safety-aware concatenation: new, harder RL samples made of two samples each.

For each new sample two distinct samples ``a`` and ``b`` are drawn (seeded):

- text: ``a.prompt + separator + b.prompt`` (those present), the same for the responses;
- images: all images of both, merged into **one** image (side by side, stacked, or a grid;
  the longest side capped at ``max_image_size``), saved under ``output_dir/images``;
- labels, per task: ``unharmful`` only if both are unharmful, else ``harmful``
  (:func:`combine_labels`; a sample without a response does not vote on the response task).

Samples with videos or audios are kept (``include_original``) but never paired: a clip is not
merged like an image, and a pair without it would keep its label.

``fraction`` is the share of new samples in the output (paper: about 20% of the RL data):
with ``n`` inputs and the originals kept, ``round(n * fraction / (1 - fraction))`` are made.
The output ``output_dir/augmented.jsonl`` holds the originals (``include_original``) then the
new samples, as ``guardrail`` rows; ``stats.json`` has the counts.

>>> combine_labels("unharmful", "harmful"), combine_labels("unharmful", "unharmful"), combine_labels(None, "unharmful")
('harmful', 'unharmful', 'unharmful')
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from guardrail.errors import ConfigurationError
from guardrail.samples import Sample, task_labels
from guardrail.training.config import DataConfig, option
from guardrail.training.data import write_examples
from guardrail.training.runtime import timer

__all__ = [
    "LAYOUTS",
    "AugmentConfig",
    "AugmentResult",
    "augment_dataset",
    "combine_labels",
    "concatenate",
    "layout_boxes",
    "merge_images",
]

log = logging.getLogger("guardrail.training")

LAYOUTS = ("auto", "horizontal", "vertical", "grid")


@dataclass
class AugmentConfig(DataConfig):
    """Settings of ``python -m guardrail.training augment`` (recipe section ``augment``)."""

    section = "augment"

    output_dir: str | None = option(None, "where augmented.jsonl, images/ and stats.json go")
    fraction: float = option(0.2, "share of concatenated samples in the output (0 <= fraction < 1)")
    layout: str = option(
        "auto",
        "how images are merged: auto (side by side or stacked for two, grid for more), horizontal, vertical, grid",
        choices=LAYOUTS,
    )
    max_image_size: int = option(
        1024, "longest side of a merged image in pixels (larger merges are scaled down)"
    )
    separator: str = option("\n", "text between the two concatenated texts")
    include_original: bool = option(True, "write the input samples too (the RL data set)")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.fraction < 1:
            raise ConfigurationError("augment.fraction must be in [0, 1)")
        if self.max_image_size < 28:
            raise ConfigurationError("augment.max_image_size must be at least 28 pixels")

    def count(self, n: int) -> int:
        """How many concatenated samples ``n`` inputs give."""
        if n < 2 or self.fraction == 0:
            return 0
        return max(1, round(n * self.fraction / (1 - self.fraction)))


@dataclass(frozen=True)
class AugmentResult:
    output_file: str
    originals: int
    augmented: int
    with_images: int
    harmful_request: int
    stats_file: str


def combine_labels(a: str | None, b: str | None) -> str | None:
    """The label of a concatenation: ``harmful`` if either is harmful, ``unharmful`` if the
    present ones are all unharmful, None when neither has the task."""
    present = [x for x in (a, b) if x is not None]
    if not present:
        return None
    return "harmful" if "harmful" in present else "unharmful"


def layout_boxes(
    sizes: Sequence[tuple[int, int]], layout: str = "auto"
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Canvas size and the top-left corner of each image for a merge (before any scaling).

    Images keep their size; ``horizontal`` centres them vertically in one row, ``vertical``
    horizontally in one column, ``grid`` puts each in the middle of a cell as large as the
    largest image, ``ceil(sqrt(n))`` cells wide.
    """
    if not sizes:
        raise ValueError("no images to merge")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    n = len(sizes)
    if layout == "auto":
        if n == 1:
            layout = "horizontal"
        elif n == 2:
            w = sum(s[0] for s in sizes), max(s[1] for s in sizes)
            h = max(s[0] for s in sizes), sum(s[1] for s in sizes)
            squareness = lambda wh: max(wh) / min(wh)  # noqa: E731
            layout = "horizontal" if squareness(w) <= squareness(h) else "vertical"
        else:
            layout = "grid"
    if layout == "horizontal":
        height = max(h for _, h in sizes)
        boxes, x = [], 0
        for w, h in sizes:
            boxes.append((x, (height - h) // 2))
            x += w
        return (x, height), boxes
    if layout == "vertical":
        width = max(w for w, _ in sizes)
        boxes, y = [], 0
        for w, h in sizes:
            boxes.append(((width - w) // 2, y))
            y += h
        return (width, y), boxes
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w, cell_h = max(w for w, _ in sizes), max(h for _, h in sizes)
    boxes = []
    for i, (w, h) in enumerate(sizes):
        r, c = divmod(i, cols)
        boxes.append((c * cell_w + (cell_w - w) // 2, r * cell_h + (cell_h - h) // 2))
    return (cols * cell_w, rows * cell_h), boxes


def merge_images(
    images: Sequence[Any],
    *,
    layout: str = "auto",
    max_size: int = 1024,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Any:
    """Merge RGB images into one (see :func:`layout_boxes`); scaled down so that its longest
    side is at most ``max_size`` (aspect ratio kept, each side at least 1 pixel)."""
    from PIL import Image

    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    (width, height), boxes = layout_boxes([im.size for im in rgb], layout)
    canvas = Image.new("RGB", (width, height), background)
    for im, box in zip(rgb, boxes, strict=True):
        canvas.paste(im, box)
    longest = max(width, height)
    if longest > max_size:
        scale = max_size / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        canvas = canvas.resize(size, Image.Resampling.BILINEAR)
    return canvas


def _join(a: str | None, b: str | None, separator: str) -> str | None:
    present = [x for x in (a, b) if x is not None]
    return separator.join(present) if present else None


def concatenate(a: Sample, b: Sample, *, image: str | None, separator: str = "\n", id: str = "") -> Sample:  # noqa: A002
    """The concatenation of two samples; ``image`` is the merged image's path (None: no images)."""
    labels = task_labels(
        request=combine_labels(a.request_label, b.request_label),
        response=combine_labels(a.response_label, b.response_label),
    )
    return Sample(
        id=id or f"{a.id}+{b.id}",
        labels=labels,
        prompt=_join(a.prompt, b.prompt, separator),
        response=_join(a.response, b.response, separator),
        images=(image,) if image else (),
        meta={"augmented": True, "from": [a.id, b.id]},
        categories=_union(a.categories, b.categories),
    )


def _union(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The categories a concatenation violates: those of either part (None: neither has labels)."""
    if a is None and b is None:
        return None
    return tuple(dict.fromkeys((*(a or ()), *(b or ()))))


def augment_dataset(config: AugmentConfig) -> AugmentResult:
    """Make the concatenated samples and write the RL data set (see the module docstring)."""
    elapsed = timer()
    if not config.output_dir:
        raise ConfigurationError("augment.output_dir: give an output directory")
    from guardrail.inputs import load_image

    data = config.load(require_target=False)
    examples = list(data.examples)
    out = Path(config.output_dir)
    image_dir = out / "images"
    rng = random.Random(config.seed)
    n_new = config.count(len(examples))
    # a clip cannot be merged like an image, and a pair that dropped it would keep its label:
    # samples with videos or audios are kept as they are and never paired
    pool = [e for e in examples if not (e.videos or e.audios)]
    if len(pool) < 2 and config.fraction > 0:
        log.warning("augment: %d sample(s) without clips: nothing to pair", len(pool))
        n_new = 0
    new: list[Sample] = []
    for j in range(n_new):
        i1, i2 = rng.sample(range(len(pool)), 2)
        a, b = pool[i1], pool[i2]
        paths = [*a.images, *b.images]
        image_path = None
        if paths:
            image_dir.mkdir(parents=True, exist_ok=True)
            merged = merge_images(
                [load_image(p, index=k) for k, p in enumerate(paths)],
                layout=config.layout,
                max_size=config.max_image_size,
            )
            image_path = str(image_dir / f"aug-{j:05d}.png")
            merged.save(image_path)
        new.append(concatenate(a, b, image=image_path, separator=config.separator, id=f"aug-{j:05d}"))
    rows = (examples if config.include_original else []) + new
    output_file = out / "augmented.jsonl"
    write_examples(output_file, rows)
    result = AugmentResult(
        output_file=str(output_file),
        originals=len(examples) if config.include_original else 0,
        augmented=len(new),
        with_images=sum(1 for e in new if e.images),
        harmful_request=sum(1 for e in new if e.request_label == "harmful"),
        stats_file=str(out / "stats.json"),
    )
    stats = {
        **asdict(result),
        "input_samples": len(examples),
        "skipped_rows": data.skipped,
        "seconds": round(elapsed(), 3),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    log.info(
        "augment: %d originals + %d concatenated samples -> %s",
        result.originals,
        result.augmented,
        output_file,
    )
    return result
