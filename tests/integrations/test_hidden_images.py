"""Issue 16, item 1: images under other names (``photo=``, ``image_url=``, ``attachments=``, a
field of a request body, an upload, ``picture`` in a chain's input) are checked, and content the
guard cannot check (audio, video, unknown binary) is refused, never passed. The cases as a user
met them: a real FastAPI app with real multipart uploads, plain handlers, a real LangChain chain.
"""

import base64
import io
import os
import threading
import wave

import pytest
from PIL import Image

from guardrail import Guard, ImageError, ImageTooLargeError, InputError, InputLimits, UncheckableContentError
from guardrail.errors import GuardViolation
from guardrail.testing import FakeBackend, result_output
from tests.conftest import make_image
from tests.integrations.conftest import opened

BAD = (255, 0, 0)  # a picture of this colour is harmful to this guard


class PictureGuard:
    """A scripted guard that judges the pictures it is shown: a pure red one is harmful."""

    def __init__(self, **options):
        self.seen: list[int] = []  # images per check
        self._lock = threading.Lock()
        self.guard = Guard(FakeBackend(respond=self._respond), **options)

    def _respond(self, prompt) -> str:
        with self._lock:
            self.seen.append(len(prompt.images))
        harmful = any(img.getpixel((0, 0)) == BAD for img in prompt.images)
        return result_output("harmful" if harmful else "unharmful", "unharmful")


@pytest.fixture
def pg() -> PictureGuard:
    return PictureGuard()


def png(color=(20, 120, 220)) -> bytes:
    return make_image(color=color)


def data_url(color=(20, 120, 220)) -> str:
    return "data:image/png;base64," + base64.b64encode(png(color)).decode()


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    return buf.getvalue()


MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
BINARY = bytes(range(256)) * 4


# ------------------------------------------------------------------------ FastAPI, real uploads
@pytest.fixture
def app_client(pg):
    from fastapi import FastAPI, File, Form, UploadFile
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient
    from pydantic import BaseModel

    app = FastAPI()
    ran: list[str] = []

    @app.exception_handler(GuardViolation)
    async def blocked(request, exc):
        return JSONResponse(status_code=400, content={"blocked": exc.stage})

    @app.exception_handler(InputError)
    async def invalid(request, exc):
        return JSONResponse(status_code=422, content={"error": type(exc).__name__, "detail": str(exc)})

    @app.post("/describe")
    @pg.guard.check
    async def describe(prompt: str = Form(...), photo: UploadFile = File(...)) -> dict:
        data = await photo.read()  # the handler still reads the whole upload
        ran.append("describe")
        return {"answer": f"a picture of {len(data)} bytes"}

    @app.post("/describe-sync")
    @pg.guard.check
    def describe_sync(prompt: str = Form(...), photo: UploadFile = File(...)) -> dict:
        data = photo.file.read()
        ran.append("describe-sync")
        return {"answer": f"a picture of {len(data)} bytes"}

    @app.post("/compare")
    @pg.guard.check
    async def compare(question: str = Form(...), attachments: list[UploadFile] = File(...)) -> dict:
        ran.append("compare")
        return {"text": f"{len(attachments)} files"}

    @app.post("/upload-only")
    @pg.guard.check
    async def upload_only(photo: UploadFile = File(...)) -> dict:
        ran.append("upload-only")
        return {"answer": "stored"}

    @app.post("/image-param")
    @pg.guard.check
    async def image_param(prompt: str = Form(...), image: UploadFile = File(...)) -> dict:
        ran.append("image-param")  # the parameter named image: once "unsupported image type UploadFile"
        return {"answer": str(len(await image.read()))}

    class Ask(BaseModel):
        question: str
        photo: str | None = None
        image_url: str | None = None

    @app.post("/ask")
    @pg.guard.check
    async def ask(body: Ask) -> dict:
        ran.append("ask")
        return {"answer": "fine"}

    client = TestClient(app)
    client.ran = ran
    return client


def upload(name: str, data: bytes, mime: str) -> tuple[str, bytes, str]:
    return (name, data, mime)


@pytest.mark.parametrize("path", ["/describe", "/describe-sync"])
def test_fastapi_upload_is_checked_and_left_readable(app_client, pg, path):
    image = png()
    r = app_client.post(
        path, data={"prompt": "what is this?"}, files={"photo": upload("a.png", image, "image/png")}
    )
    assert r.status_code == 200 and r.json() == {"answer": f"a picture of {len(image)} bytes"}
    assert pg.seen == [1, 1]  # the request check and the response check both saw the picture
    r = app_client.post(
        path, data={"prompt": "what is this?"}, files={"photo": upload("a.png", png(BAD), "image/png")}
    )
    assert r.status_code == 400 and r.json() == {"blocked": "input"}
    assert app_client.ran == [path.strip("/").replace("-", "_").replace("_", "-")]


@pytest.mark.parametrize("path", ["/describe", "/describe-sync"])
@pytest.mark.parametrize(
    ("data", "mime", "kind"),
    [
        (wav_bytes(), "audio/wav", "audio (WAV)"),
        (MP4, "video/mp4", "video (MP4/QuickTime)"),
        (BINARY, "application/octet-stream", "unknown binary data"),
        (b"just some text\n", "text/plain", "text"),
        (b"%PDF-1.7\n...", "image/png", "PDF document"),  # the bytes decide, not the client's type
    ],
)
def test_fastapi_upload_the_guard_cannot_check_is_refused(app_client, pg, path, data, mime, kind):
    r = app_client.post(path, data={"prompt": "transcribe this"}, files={"photo": upload("f", data, mime)})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "UncheckableContentError"
    assert "photo" in body["detail"] and kind in body["detail"] and "extract=" in body["detail"]
    assert app_client.ran == [] and pg.seen == []


def test_fastapi_many_uploads_and_upload_only(app_client, pg):
    files = [
        ("attachments", upload("a.png", png(), "image/png")),
        ("attachments", upload("b.png", png(), "image/png")),
    ]
    r = app_client.post("/compare", data={"question": "which is bigger?"}, files=files)
    assert r.status_code == 200 and pg.seen[0] == 2
    files.append(("attachments", upload("c.png", png(BAD), "image/png")))
    assert app_client.post("/compare", data={"question": "and now?"}, files=files).status_code == 400
    r = app_client.post("/upload-only", files={"photo": upload("a.png", png(BAD), "image/png")})
    assert r.status_code == 400 and app_client.ran == ["compare"]
    r = app_client.post(
        "/image-param", data={"prompt": "hi"}, files={"image": upload("a.png", png(), "image/png")}
    )
    assert r.status_code == 200 and r.json() == {"answer": str(len(png()))}
    r = app_client.post(
        "/image-param", data={"prompt": "hi"}, files={"image": upload("a.wav", wav_bytes(), "audio/wav")}
    )
    assert r.status_code == 422 and "image 0 holds audio (WAV)" in r.json()["detail"]


def test_fastapi_upload_over_the_byte_limit_is_refused_before_reading():
    from fastapi import FastAPI, File, UploadFile
    from fastapi.testclient import TestClient

    small = PictureGuard(limits=InputLimits(max_image_bytes=1000))
    app = FastAPI()
    reads = []

    @app.post("/up")
    @small.guard.check(output=False)
    async def up(prompt: str, photo: UploadFile = File(...)) -> dict:
        return {"ok": True}

    big = make_image(size=(400, 400), color=(1, 2, 3), fmt="BMP")
    with TestClient(app, raise_server_exceptions=True) as client:
        with pytest.raises(ImageTooLargeError, match="photo: upload is"):
            client.post("/up", params={"prompt": "hi"}, files={"photo": ("a.bmp", big, "image/bmp")})
    assert small.seen == [] and reads == []


def test_fastapi_body_fields_and_question(app_client, pg):
    r = app_client.post("/ask", json={"question": "what is in the photo?", "photo": data_url()})
    assert r.status_code == 200 and pg.seen[-2:] == [1, 1]
    assert app_client.post("/ask", json={"question": "and this?", "photo": data_url(BAD)}).status_code == 400
    raw = base64.b64encode(png(BAD)).decode()  # base64 without a data: prefix is an image too
    assert app_client.post("/ask", json={"question": "and this?", "photo": raw}).status_code == 400
    r = app_client.post("/ask", json={"question": "and this?", "image_url": "https://example.com/cat"})
    assert r.status_code == 422 and r.json()["error"] == "ImageError"  # remote images are off here
    r = app_client.post("/ask", json={"question": "and this?", "photo": "data:audio/wav;base64,AAAA"})
    assert r.status_code == 422 and "body.photo" in r.json()["detail"]
    assert app_client.post("/ask", json={"question": "just text"}).status_code == 200


# ------------------------------------------------------------------------------ plain handlers
def test_images_under_any_name_are_checked(pg):
    @pg.guard.check(output=False)
    def handler(prompt: str, photo=None, image_url=None, attachments=None, meta=None) -> str:
        return "ok"

    red = Image.new("RGB", (8, 8), BAD)
    for kwargs in (
        {"photo": red},
        {"photo": png(BAD)},
        {"photo": bytearray(png(BAD))},
        {"image_url": data_url(BAD)},
        {"attachments": [png(), {"kind": "scan", "data": png(BAD)}]},
        {"meta": {"nested": [{"deeper": io.BytesIO(png(BAD))}]}},
    ):
        with pytest.raises(GuardViolation):
            handler("what is this?", **kwargs)
    assert handler("what is this?", photo=png(), meta={"user": "ann", "n": 3, "tags": ["x"]}) == "ok"
    assert pg.seen[-1] == 1
    # a real-sized picture as plain base64 in an unremarkable field (far longer than any URL)
    noisy = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    noisy.putpixel((0, 0), BAD)
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    encoded = base64.b64encode(buf.getvalue()).decode()
    assert len(encoded) > 100_000
    with pytest.raises(GuardViolation):
        handler("what is this?", meta={"payload": encoded})


def test_file_objects_are_put_back_where_they_were(pg):
    seen = []

    @pg.guard.check(output=False)
    def handler(prompt: str, photo) -> str:
        seen.append(photo.read())
        return "ok"

    f = io.BytesIO(png())
    assert handler("hi", f) == "ok" and seen == [png()] and pg.seen == [1]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (wav_bytes(), "audio (WAV)"),
        (MP4, "video (MP4/QuickTime)"),
        (BINARY, "unknown binary data"),
        (io.BytesIO(wav_bytes()), "audio (WAV)"),
        (io.StringIO("text"), "a text file"),
        ("data:video/mp4;base64,AAAA", "video/mp4"),
        ("https://cdn.example.com/talk.mp3", "audio"),
        (base64.b64encode(wav_bytes()).decode(), "audio (WAV)"),
    ],
)
def test_content_that_cannot_be_checked_names_the_argument(pg, value, kind):
    ran = []

    @pg.guard.check
    def handler(prompt: str, voice) -> str:
        ran.append(1)
        return "ok"

    with pytest.raises(UncheckableContentError) as info:
        handler("transcribe", {"clips": [value]})
    assert info.value.where == "voice.clips[0]" and kind in str(info.value)
    assert ran == [] and pg.seen == []


def test_what_is_not_content_is_left_alone(pg):
    class Session:  # a dependency object: looked through one level only
        def __init__(self):
            self.engine = {"url": "postgresql://db/x", "blob": BINARY}
            self.name = "s"

    @pg.guard.check(output=False)
    def handler(prompt: str, user_id: str, session, raw: bytes, link: str, mime: str) -> str:
        return "ok"

    assert handler("hi", "u-1", Session(), b'{"a": 1}', "https://example.com/docs", "image/png") == "ok"
    assert pg.seen == [0]


def test_paths_under_image_names_are_never_opened(pg, tmp_path, monkeypatch):
    reads = opened(monkeypatch)
    (tmp_path / "cat.png").write_bytes(png(BAD))

    @pg.guard.check(output=False)
    def handler(prompt: str, photo=None, extra=None) -> str:
        return "ok"

    for kwargs in (
        {"photo": str(tmp_path / "cat")},
        {"extra": str(tmp_path / "cat.png")},
        {"photo": tmp_path / "cat.png"},
    ):
        with pytest.raises(ImageError, match="local file paths are not accepted here"):
            handler("look", **kwargs)
    assert reads == [] and pg.seen == []

    @pg.guard.check(output=False, allow_paths=True)
    def trusted(prompt: str, photo) -> str:
        return "ok"

    with pytest.raises(GuardViolation):
        trusted("look", str(tmp_path / "cat.png"))


def test_explicit_extract_wins(pg):
    @pg.guard.check(extract="prompt", output=False)
    def handler(prompt: str, voice: bytes) -> str:
        return "ok"

    assert handler("hi", wav_bytes()) == "ok" and pg.seen == [0]  # the app said what to check


def test_too_deep_or_too_big_to_search_is_refused(pg):
    from guardrail.integrations import content

    @pg.guard.check(output=False)
    def handler(prompt: str, tree) -> str:
        return "ok"

    deep: dict = {}
    node = deep
    for _ in range(content.MAX_DEPTH + 2):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(UncheckableContentError, match="nested deeper"):
        handler("hi", deep)
    with pytest.raises(UncheckableContentError, match="more than"):
        handler("hi", [0] * (content.MAX_NODES + 1))
    loop: list = []
    loop.append(loop)  # a cycle is searched once
    assert handler("hi", loop) == "ok"


async def test_async_handler_reads_file_objects(pg):
    @pg.guard.check(output=False)
    async def handler(prompt: str, photo) -> str:
        return photo.read()

    with pytest.raises(GuardViolation):
        await handler("hi", io.BytesIO(png(BAD)))
    assert await handler("hi", io.BytesIO(png())) == png()


# ---------------------------------------------------------------------------------- LangChain
def test_langchain_chain_input_with_a_picture(pg):
    from itertools import cycle

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages(
        [
            (
                "human",
                [
                    {"type": "text", "text": "{question}"},
                    {"type": "image_url", "image_url": {"url": "{picture}"}},
                ],
            )
        ]
    )
    llm = GenericFakeChatModel(messages=cycle([AIMessage("A red square.")]))
    chain = pg.guard.wrap(prompt | llm)
    assert chain.invoke({"question": "what is it?", "picture": data_url()}).content == "A red square."
    assert pg.seen[0] == 1
    with pytest.raises(GuardViolation):
        chain.invoke({"question": "what is it?", "picture": data_url(BAD)})
    with pytest.raises(UncheckableContentError, match="input.picture"):
        chain.invoke({"question": "what is it?", "picture": wav_bytes()})
    # only a picture: still a request
    with pytest.raises(GuardViolation):
        pg.guard.as_runnable().invoke({"picture": Image.new("RGB", (4, 4), BAD)})
    # key= names the fields exactly: the app said what to check
    named = pg.guard.wrap(prompt | llm, key="question", output=False)
    named.invoke({"question": "what is it?", "picture": data_url(BAD)})
    assert pg.seen[-1] == 0
