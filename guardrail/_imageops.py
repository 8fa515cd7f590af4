"""One RGB picture per image that shows the guard everything a model could be shown of it.

An app's model does not always see an image the way a browser shows it, so a guard that looks at
one rendering only can be shown another picture than the model. Two cases matter:

- **Transparency.** Compositing alpha on white (what browsers and Qwen-VL's loader do) hides the
  colour under transparent pixels; dropping alpha (``image.convert("RGB")``, what Hugging Face
  image processors and most PIL pipelines do) shows it. When the colour under the (fully or
  partly) transparent pixels is not one uniform fill, the two renderings can differ in content,
  so the guard gets both, as two panels of one picture: ``[alpha on white | alpha dropped]``.
  When it is uniform (a plain transparent background), alpha on white alone shows everything.
- **Animation.** Every frame is checked, not only the first: the distinct frames (each rendered
  as above) are tiled into one contact sheet. More than ``max_frames`` frames is refused with
  :class:`~guardrail.errors.ImageTooLargeError` rather than sampled: a frame that is not looked
  at would pass unseen.

A request keeps its number of images (each source gives one picture), so image limits and image
slots in the guard's prompt do not change. A sheet is kept within ``max_pixels``: panels are
scaled down when needed. Frames are decoded one at a time, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from guardrail.errors import ImageTooLargeError

__all__ = ["flatten", "renderings", "sheet"]

GAP_COLOR = (128, 128, 128)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_GREY = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})


def flatten(img: Any, *, where: str, max_frames: int, max_pixels: int) -> Any:
    """The RGB picture the guard checks for ``img`` (see the module docstring).

    Raises :class:`~guardrail.errors.ImageTooLargeError` for an animation over ``max_frames``;
    PIL's own errors (``OSError``, ``ValueError``, ``EOFError``) propagate to the caller.
    """
    frames = int(getattr(img, "n_frames", 1) or 1) if getattr(img, "is_animated", False) else 1
    if frames > max_frames:
        raise ImageTooLargeError(
            f"{where}: animated image with {frames} frames; the limit is {max_frames} "
            "(InputLimits.max_frames)"
        )
    if frames == 1:
        panels = renderings(_upright(img))
        if len(panels) == 1:
            return panels[0]
        budget = max(1, max_pixels // len(panels))
        return _fit(sheet([_fit(p, budget) for p in panels]), max_pixels)
    # Two panels at most per frame: size each so that the sheet stays within max_pixels.
    budget = max(1, max_pixels // (2 * frames))
    start = img.tell()
    panels, seen = [], set()
    try:
        for i in range(frames):
            img.seek(i)
            for panel in renderings(_upright(img)):
                key = (panel.size, hashlib.blake2b(panel.tobytes(), digest_size=16).digest())
                if key not in seen:  # a frame repeated (or a still GIF saved as animated) once
                    seen.add(key)
                    panels.append(_fit(panel, budget))
    finally:
        try:
            img.seek(start)  # a PIL image the caller passed keeps its position
        except (OSError, ValueError, EOFError):  # pragma: no cover - it was readable a moment ago
            pass
    return panels[0] if len(panels) == 1 else _fit(sheet(panels), max_pixels)  # gaps included


def renderings(img: Any) -> list[Any]:
    """The RGB renderings of one still image the guard must see: one, or two when alpha hides
    non-uniform colour (alpha on white, then alpha dropped)."""
    from PIL import Image, ImageStat

    mode = img.mode
    if mode == "RGB":
        return [img if img.__class__ is Image.Image else img.copy()]
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        dropped = rgba.convert("RGB")
        if alpha.getextrema()[0] == 255:  # nothing is transparent: both renderings are equal
            return [dropped]
        on_white = Image.new("RGB", rgba.size, (255, 255, 255))
        on_white.paste(rgba, mask=alpha)
        hidden = alpha.point(lambda a: 255 if a < 255 else 0)  # pixels alpha (partly) hides
        if all(lo == hi for lo, hi in ImageStat.Stat(dropped, hidden).extrema):
            return [on_white]  # a uniform fill under the transparency: nothing is hidden
        return [on_white, dropped]
    if mode in _WIDE_GREY:
        # 16/32-bit grey: scale to 8 bits instead of clipping everything to white.
        wide = img.convert("F")
        top = wide.getextrema()[1] or 1.0
        return [wide.point(lambda v: v * (255.0 / top)).convert("L").convert("RGB")]
    return [img.convert("RGB")]


def sheet(panels: list[Any]) -> Any:
    """Tile ``panels`` (RGB images) into one RGB image, in order, row by row, with grey gaps;
    the grid's shape is the one closest to square."""
    from PIL import Image

    cw = max(p.width for p in panels)
    ch = max(p.height for p in panels)
    gap = max(2, max(cw, ch) // 50)
    n = len(panels)

    def shape(cols: int) -> tuple[int, int]:
        rows = math.ceil(n / cols)
        return cols * cw + (cols - 1) * gap, rows * ch + (rows - 1) * gap

    cols = min(range(1, n + 1), key=lambda c: abs(math.log(shape(c)[0] / shape(c)[1])))
    out = Image.new("RGB", shape(cols), GAP_COLOR)
    for i, panel in enumerate(panels):
        row, col = divmod(i, cols)
        x = col * (cw + gap) + (cw - panel.width) // 2
        y = row * (ch + gap) + (ch - panel.height) // 2
        out.paste(panel, (x, y))
    return out


def _upright(img: Any) -> Any:
    from PIL import ImageOps

    return ImageOps.exif_transpose(img) or img


def _fit(img: Any, max_pixels: int) -> Any:
    w, h = img.size
    if w * h <= max_pixels:
        return img
    from PIL import Image

    scale = math.sqrt(max_pixels / (w * h))  # floor below keeps the result within max_pixels
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
