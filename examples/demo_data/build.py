"""Build the demo training set from ``source.py``: ``train.jsonl``, ``heldout.jsonl``, ``images/``.

    python examples/demo_data/build.py          # rewrite the files (they are checked in)
    python examples/demo_data/build.py --check  # exit 1 if the checked-in files are out of date

Rows are GuardReasoner-VLTrain style (``{"id", "messages": [system, user, assistant], "images"}``)
with the system prompt and user text rendered by the library's ``guardreasoner-vl`` profile, so
they read exactly as what :class:`guardrail.Guard` sends (``<image>`` where each image goes), and
the assistant text ``<think>numbered steps</think><result>labels</result>``; harmful rows name
their harm categories (``"categories": ["theft"]``, codes of ``training/policies/demo.yaml``,
from ``source.categories``; ``[]`` for a safe row, so that the evaluation's per-category scores
count a category named on a safe row as a false positive), which a recipe with ``policy:`` trains
on and others ignore. The pictures are
drawn here with PIL: simple scenes and typographic cards with short, mild text.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from source import CARDS, HELDOUT, SCENES, TRAIN, R, categories  # noqa: E402

from guardrail.policies import Policy  # noqa: E402
from guardrail.profiles import GuardReasonerVLProfile, ModerationInput  # noqa: E402
from guardrail.profiles.base import ImageSlot  # noqa: E402

SIZE = 224
#: The codes of the policy the harmful rows' categories come from.
POLICY_CODES = set(Policy.from_yaml(HERE.parents[1] / "training" / "policies" / "demo.yaml").codes)
IMAGE_TOKEN = "<image>"


# ---------------------------------------------------------------------------------- rows
def reasoning(row: R) -> str:
    """The numbered steps, then the conclusion drawn from the labels."""
    if row.response is None:
        conclusion = f"So the request is {row.request}."
    else:
        conclusion = f"So the request is {row.request} and the response is {row.response_label}."
    steps = [*row.steps, conclusion]
    return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))


def to_record(row: R, row_id: str, profile: GuardReasonerVLProfile) -> dict:
    """One ShareGPT row, its prompt rendered by the profile as Guard renders it."""
    item = ModerationInput(prompt=row.prompt, response=row.response, images=tuple(row.images))
    user = "".join(IMAGE_TOKEN if isinstance(p, ImageSlot) else p for p in profile.user_parts(item))
    labels = {"request": row.request, "response": row.response_label}
    return {
        "id": row_id,
        "messages": [
            {"role": "system", "content": profile.system_prompt},
            {"role": "user", "content": user},
            {"role": "assistant", "content": profile.answer(reasoning(row), labels)},
        ],
        "images": [f"images/{name}.png" for name in row.images],
        "categories": list(categories(row)),  # [] for a safe row: scored per category as "none"
    }


def check_categories(rows: list[R]) -> None:
    """Every harmful row names a category of the demo policy; no harmless row names one."""
    for r in rows:
        harmful = r.request == "harmful" or r.response_label == "harmful"
        cats = categories(r)
        if harmful != bool(cats) or not set(cats) <= POLICY_CODES:
            raise SystemExit(f"row {r.prompt!r} {r.images}: categories {cats} (harmful: {harmful})")


def jsonl(rows: list[R], prefix: str) -> str:
    check_categories(rows)
    profile = GuardReasonerVLProfile()
    return "".join(
        json.dumps(to_record(r, f"{prefix}-{i:03d}", profile), ensure_ascii=False) + "\n"
        for i, r in enumerate(rows, 1)
    )


# ------------------------------------------------------------------------------ pictures
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def card(text: str, background: str) -> Image.Image:
    """Black words centred on a coloured card, wrapped to fit."""
    img = Image.new("RGB", (SIZE, SIZE), background)
    draw = ImageDraw.Draw(img)
    font = _font(28)
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= SIZE - 24:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    height = 36 * len(lines)
    y = (SIZE - height) // 2
    for line in lines:
        x = (SIZE - draw.textlength(line, font=font)) // 2
        draw.text((x, y), line, fill="black", font=font)
        y += 36
    draw.rectangle((4, 4, SIZE - 5, SIZE - 5), outline="black", width=3)
    return img


def scene(kind: str, background: str) -> Image.Image:
    """A simple picture made of shapes."""
    img = Image.new("RGB", (SIZE, SIZE), background)
    d = ImageDraw.Draw(img)
    if kind == "house":
        d.rectangle((0, 180, SIZE, SIZE), fill="#6ab04c")
        d.rectangle((52, 100, 172, 190), fill="#f0c987", outline="black", width=2)
        d.polygon([(40, 104), (112, 40), (184, 104)], fill="#c0392b", outline="black")
        d.rectangle((98, 140, 126, 190), fill="#7f4f24")
        d.rectangle((64, 116, 88, 138), fill="#aee1f9", outline="black")
        d.rectangle((136, 116, 160, 138), fill="#aee1f9", outline="black")
    elif kind == "bread":
        d.rectangle((0, 150, SIZE, SIZE), fill="#a0522d")
        d.ellipse((36, 80, 188, 170), fill="#d4a055", outline="#8b5a2b", width=3)
        for x in (70, 105, 140):
            d.arc((x - 14, 95, x + 14, 150), 200, 340, fill="#8b5a2b", width=3)
    elif kind == "tree":
        d.ellipse((160, 16, 208, 64), fill="#f9d71c")
        d.rectangle((0, 190, SIZE, SIZE), fill="#6ab04c")
        d.rectangle((102, 120, 122, 192), fill="#7f4f24")
        d.ellipse((56, 40, 168, 140), fill="#2e8b57")
    elif kind == "cup":
        d.rectangle((0, 170, SIZE, SIZE), fill="#c8a27a")
        d.rectangle((66, 90, 146, 170), fill="white", outline="black", width=3)
        d.arc((132, 104, 176, 148), 270, 90, fill="black", width=5)
        d.rectangle((72, 96, 140, 112), fill="#b5651d")
        for x in (86, 106, 126):
            d.arc((x - 8, 50, x + 8, 86), 90, 270, fill="#999999", width=2)
    elif kind == "bicycle":
        d.ellipse((24, 112, 96, 184), outline="black", width=5)
        d.ellipse((128, 112, 200, 184), outline="black", width=5)
        d.line([(60, 148), (100, 100), (164, 148), (120, 148), (100, 100)], fill="#1e90ff", width=5)
        d.line([(120, 148), (150, 96), (168, 96)], fill="#1e90ff", width=5)
        d.line([(92, 94), (112, 94)], fill="black", width=6)
    elif kind == "door":
        d.rectangle((62, 30, 162, 210), fill="#8b5a2b", outline="black", width=3)
        d.rectangle((76, 46, 148, 110), outline="#5c3a1a", width=2)
        d.rectangle((76, 126, 148, 196), outline="#5c3a1a", width=2)
        d.ellipse((136, 112, 152, 128), fill="#ffd700", outline="black")
        d.rectangle((140, 130, 148, 146), fill="#333333")
    elif kind == "book":
        d.rectangle((44, 40, 180, 190), fill="#2c5f8a", outline="black", width=3)
        d.rectangle((56, 52, 168, 178), outline="#f5deb3", width=2)
        d.text((70, 100), "STORIES", fill="#f5deb3", font=_font(20))
    elif kind == "cake":
        d.rectangle((0, 180, SIZE, SIZE), fill="#d2b48c")
        d.rectangle((50, 110, 174, 180), fill="#8b4513", outline="black", width=2)
        d.rectangle((50, 100, 174, 118), fill="#fff5ee")
        for x in (80, 112, 144):
            d.rectangle((x - 3, 70, x + 3, 100), fill="#ff69b4")
            d.ellipse((x - 5, 58, x + 5, 72), fill="#ffa500")
    elif kind == "car":
        d.rectangle((0, 176, SIZE, SIZE), fill="#555555")
        d.rectangle((28, 118, 196, 162), fill="#e74c3c", outline="black", width=2)
        d.polygon([(62, 118), (86, 84), (150, 84), (172, 118)], fill="#e74c3c", outline="black")
        d.rectangle((92, 90, 144, 116), fill="#aee1f9")
        d.ellipse((46, 146, 82, 182), fill="black")
        d.ellipse((142, 146, 178, 182), fill="black")
    else:
        raise ValueError(f"unknown scene {kind!r}")
    return img


def pictures() -> dict[str, Image.Image]:
    out = {name: scene(kind, bg) for name, (kind, bg) in SCENES.items()}
    out.update({name: card(text, bg) for name, (text, bg) in CARDS.items()})
    return out


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- main
def outputs() -> dict[Path, bytes]:
    used = {name for r in TRAIN + HELDOUT for name in r.images}
    drawn = pictures()
    missing = used - set(drawn)
    if missing:
        raise SystemExit(f"rows use pictures that are not defined: {sorted(missing)}")
    files = {
        HERE / "train.jsonl": jsonl(TRAIN, "train").encode(),
        HERE / "heldout.jsonl": jsonl(HELDOUT, "heldout").encode(),
    }
    files.update({HERE / "images" / f"{name}.png": png(img) for name, img in sorted(drawn.items())})
    return files


def summary(rows: list[R]) -> str:
    kinds: dict[str, int] = {}
    for r in rows:
        kind = ("image" if r.prompt is None else "text+image") if r.images else "text"
        kind += " + response" if r.response is not None else ""
        kinds[kind] = kinds.get(kind, 0) + 1
    harmful = sum(r.request == "harmful" for r in rows)
    responses = [r for r in rows if r.response is not None]
    harmful_responses = sum(r.response_label == "harmful" for r in responses)
    parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return (
        f"{len(rows)} rows ({parts}); requests {harmful} harmful / {len(rows) - harmful} unharmful; "
        f"responses {harmful_responses} harmful / {len(responses) - harmful_responses} unharmful"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args()
    files = outputs()
    if args.check:
        stale = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
        for p in stale:
            print(f"out of date: {p.relative_to(HERE)}")
        return 1 if stale else 0
    (HERE / "images").mkdir(exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
    print(f"train:   {summary(TRAIN)}")
    print(f"heldout: {summary(HELDOUT)}")
    print(f"images:  {len(files) - 2} in {HERE / 'images'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
