"""Safety-aware concatenation: the label rule and the image merge as properties, then a run."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from guardrail.errors import ConfigurationError
from guardrail.samples import Sample, task_labels
from guardrail.training import AugmentConfig, augment_dataset
from guardrail.training.augment import combine_labels, concatenate, layout_boxes, merge_images
from guardrail.training.data import load_examples
from tests.training.conftest import TINY_DATA, tiny_rows, write_rows

LABEL = st.sampled_from(["harmful", "unharmful"])
MAYBE_LABEL = st.one_of(st.none(), LABEL)
SIZE = st.tuples(st.integers(1, 120), st.integers(1, 120))
COLOR = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))


@given(MAYBE_LABEL, MAYBE_LABEL)
def test_label_is_unharmful_only_if_both_are(a, b):
    got = combine_labels(a, b)
    if a is None and b is None:
        assert got is None
    else:
        assert got == ("harmful" if "harmful" in (a, b) else "unharmful")
    assert combine_labels(b, a) == got


@given(LABEL, MAYBE_LABEL, LABEL, MAYBE_LABEL)
def test_concatenated_sample_labels_per_task(req_a, res_a, req_b, res_b):
    a = Sample("a", task_labels(request=req_a, response=res_a), prompt="a", response="ra" if res_a else None)
    b = Sample("b", task_labels(request=req_b, response=res_b), prompt="b", response="rb" if res_b else None)
    c = concatenate(a, b, image=None)
    assert c.request_label == ("unharmful" if req_a == req_b == "unharmful" else "harmful")
    if res_a is None and res_b is None:
        assert c.response is None and c.response_label is None
    else:
        assert c.response_label == ("harmful" if "harmful" in (res_a, res_b) else "unharmful")
        assert c.response == "\n".join(r for r in ("ra" if res_a else None, "rb" if res_b else None) if r)
    assert c.prompt == "a\nb" and c.target is None


@given(st.lists(SIZE, min_size=1, max_size=6), st.sampled_from(["auto", "horizontal", "vertical", "grid"]))
def test_layout_places_every_image_inside_the_canvas_without_overlap(sizes, layout):
    (width, height), boxes = layout_boxes(sizes, layout)
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(boxes, sizes, strict=True)]
    for x0, y0, x1, y1 in rects:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    for i, r in enumerate(rects):
        for s in rects[i + 1 :]:
            assert r[2] <= s[0] or s[2] <= r[0] or r[3] <= s[1] or s[3] <= r[1], (r, s)
    assert width * height >= sum(w * h for w, h in sizes)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(SIZE, COLOR), min_size=1, max_size=4),
    st.sampled_from(["auto", "horizontal", "vertical", "grid"]),
    st.integers(28, 200),
)
def test_merge_is_size_capped_and_keeps_each_image_where_the_layout_puts_it(parts, layout, max_size):
    images = [Image.new("RGB", size, color) for size, color in parts]
    merged = merge_images(images, layout=layout, max_size=max_size)
    (width, height), boxes = layout_boxes([im.size for im in images], layout)
    assert merged.mode == "RGB"
    assert max(merged.size) <= max_size
    scale = min(1.0, max_size / max(width, height))
    assert merged.size == (max(1, round(width * scale)), max(1, round(height * scale)))
    for ((w, h), color), (x, y) in zip(parts, boxes, strict=True):
        if w * scale >= 6 and h * scale >= 6:  # big enough to survive the downscale
            centre = (int((x + w / 2) * scale), int((y + h / 2) * scale))
            got = merged.getpixel(centre)
            assert all(abs(g - c) <= 2 for g, c in zip(got, color, strict=True)), (centre, got, color)


def test_merge_without_scaling_is_pixel_exact():
    red, blue = Image.new("RGB", (10, 20), (255, 0, 0)), Image.new("RGB", (30, 10), (0, 0, 255))
    merged = merge_images([red, blue], layout="horizontal", max_size=1000)
    assert merged.size == (40, 20)
    assert merged.crop((0, 0, 10, 20)).getcolors() == [(200, (255, 0, 0))]
    assert merged.crop((10, 5, 40, 15)).getcolors() == [(300, (0, 0, 255))]
    assert merged.getpixel((20, 0)) == (255, 255, 255)  # background around the shorter image


def test_augment_run(tmp_path):
    data = write_rows(tmp_path / "in.jsonl", tiny_rows())
    out = tmp_path / "aug"
    result = augment_dataset(
        AugmentConfig(data=[str(data)], output_dir=str(out), fraction=0.2, seed=3, max_image_size=64)
    )
    assert (result.originals, result.augmented) == (16, 4)  # round(16 * 0.2 / 0.8)
    rows = load_examples(out / "augmented.jsonl", on_bad_row="fail").examples
    assert len(rows) == 20
    originals = {e.id: e for e in load_examples(TINY_DATA).examples}
    for new in rows[16:]:
        a, b = (originals[i] for i in new.meta["from"])
        assert new.request_label == combine_labels(a.request_label, b.request_label)
        assert new.response_label == combine_labels(a.response_label, b.response_label)
        if a.images or b.images:
            (path,) = new.images
            with Image.open(path) as im:
                assert max(im.size) <= 64
        else:
            assert new.images == ()
    again = tmp_path / "again"
    augment_dataset(
        AugmentConfig(data=[str(data)], output_dir=str(again), fraction=0.2, seed=3, max_image_size=64)
    )
    assert (again / "augmented.jsonl").read_text().replace(str(again), "") == (
        out / "augmented.jsonl"
    ).read_text().replace(str(out), "")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["augmented"] == 4 and stats["input_samples"] == 16


def test_augment_config_checks():
    with pytest.raises(ConfigurationError, match="fraction"):
        AugmentConfig(fraction=1.0)
    with pytest.raises(ConfigurationError, match="layout"):
        AugmentConfig(layout="spiral")
    assert AugmentConfig(fraction=0.2).count(1) == 0 and AugmentConfig(fraction=0.5).count(10) == 10
