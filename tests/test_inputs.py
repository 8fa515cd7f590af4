"""Input validation: every accepted image source, and typed errors for everything else."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from guardrail.errors import ImageError, ImageTooLargeError, InputError, TextTooLongError, TooManyImagesError
from guardrail.inputs import InputLimits, load_image, normalize_input
from tests.conftest import make_image, png_header


def test_all_image_sources_decode_to_the_same_rgb(tmp_path, png_bytes):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes)
    url = "data:image/png;base64," + base64.b64encode(png_bytes).decode()
    pil = Image.open(io.BytesIO(png_bytes))
    sources = [pil, png_bytes, bytearray(png_bytes), str(path), path, url, {"url": url}]
    decoded = [load_image(s) for s in sources]
    for img in decoded:
        assert img.mode == "RGB" and img.size == (64, 48)
        assert img.tobytes() == decoded[0].tobytes()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ImageError),  # zero bytes
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, ImageError),  # corrupt PNG
        (make_image()[:60], ImageError),  # truncated PNG
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", ImageError),  # not raster
        (png_header(20000, 20000), ImageTooLargeError),  # decompression bomb header
    ],
    ids=["zero-bytes", "corrupt", "truncated", "svg", "bomb-header"],
)
def test_bad_image_bytes_raise_typed_errors(data, error):
    with pytest.raises(error):
        load_image(data)


def test_bomb_is_refused_before_decoding():
    # 20000x20000 RGB would need 1.2 GB; the header check refuses it in microseconds.
    with pytest.raises(ImageTooLargeError, match="pixels"):
        normalize_input(prompt="x", images=[png_header(20000, 20000)])
    with pytest.raises(ImageTooLargeError, match="10000x10000 pixels is over the limit"):
        normalize_input(prompt="x", images=[png_header(10000, 10000)])


def test_limits_are_configurable(png_bytes):
    with pytest.raises(ImageTooLargeError):
        load_image(png_bytes, limits=InputLimits(max_image_pixels=100))
    with pytest.raises(ImageTooLargeError):
        load_image(png_bytes, limits=InputLimits(max_image_bytes=10))
    with pytest.raises(TooManyImagesError):
        normalize_input(prompt="x", images=[png_bytes] * 3, limits=InputLimits(max_images=2))
    with pytest.raises(TextTooLongError):
        normalize_input(prompt="x" * 11, limits=InputLimits(max_text_chars=10))


def test_wrong_types_and_sources():
    with pytest.raises(ImageError, match="unsupported image type"):
        load_image(12345)
    with pytest.raises(InputError, match="must be a string"):
        normalize_input(prompt=42)
    with pytest.raises(InputError, match="must be a string"):
        normalize_input(prompt="x", response=["a"])
    with pytest.raises(InputError, match="images must be"):
        normalize_input(prompt="x", images=3.5)
    with pytest.raises(ImageError, match="cannot read file"):
        load_image("/no/such/file.png")
    with pytest.raises(ImageError, match="base64"):
        load_image("data:image/png,rawdata")
    with pytest.raises(ImageError, match="not valid base64"):
        load_image("data:image/png;base64,@@@@")
    with pytest.raises(ImageError, match="not an image"):
        load_image("data:text/plain;base64," + base64.b64encode(b"hi").decode())


def test_remote_urls_are_off_by_default():
    with pytest.raises(ImageError, match="disabled"):
        load_image("http://127.0.0.1:9/x.png")


def test_empty_requests():
    with pytest.raises(InputError, match="nothing to moderate"):
        normalize_input()
    with pytest.raises(InputError, match="empty"):
        normalize_input(prompt="   ")
    with pytest.raises(InputError, match="UTF-8"):
        normalize_input(prompt=b"\xff\xfe bad")
    assert normalize_input(prompt=b"caf\xc3\xa9").prompt == "café"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "I;16", "1"])
def test_image_modes_convert_to_rgb(mode):
    img = Image.new(mode, (20, 10))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    out = load_image(buf.getvalue())
    assert out.mode == "RGB" and out.size == (20, 10)


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(img).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (20, 40)


def test_animated_images_show_every_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    assert out.mode == "RGB" and {(255, 0, 0), (0, 0, 255)} <= {c for _, c in out.getcolors()}
