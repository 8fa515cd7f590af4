"""Issue 16, item 3: one vocabulary of request/response fields for the decorator and LangChain;
responses shaped as a pydantic model, {"answer": ...} or {"text": ...}; errors that name the exact
fix; mistakes found when the decorator is applied, not after the app's model ran."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

from guardrail import ConfigurationError, GuardViolation
from guardrail.integrations import fields
from tests.integrations.conftest import BAD_REQUEST, BAD_RESPONSE

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    answer: str
    sources: list[str] = []


class Reply(BaseModel):
    reply_text: str
    score: float = 0.0


def test_one_table_for_decorator_and_langchain():
    from guardrail.integrations import extract, langchain_inputs

    assert extract.REQUEST_KEYS is fields.REQUEST_FIELDS is langchain_inputs.INPUT_KEYS
    assert extract.IMAGE_KEYS is fields.IMAGE_FIELDS is langchain_inputs.IMAGE_KEYS
    text = DOCS.read_text()
    for name in (*fields.REQUEST_FIELDS, *fields.IMAGE_FIELDS, *fields.RESPONSE_FIELDS):
        assert f"`{name}`" in text, name


def test_fastapi_question_body_and_response_shapes(kw):
    app = FastAPI()
    ran = []

    @app.exception_handler(GuardViolation)
    async def blocked(request, exc):
        return JSONResponse(status_code=400, content={"stage": exc.stage})

    @app.post("/model")
    @kw.guard.check
    async def as_model(body: Question) -> Answer:
        ran.append(body.question)
        return Answer(answer=f"about {body.question}: {BAD_RESPONSE}" if "bad" in body.question else "fine")

    @app.post("/answer")
    @kw.guard.check
    def as_answer(body: Question) -> dict:
        return {"answer": BAD_RESPONSE if "bad" in body.question else "fine", "sources": []}

    @app.post("/text")
    @kw.guard.check
    def as_text(body: Question) -> dict:
        return {"text": BAD_RESPONSE if "bad" in body.question else "fine"}

    client = TestClient(app)
    for path in ("/model", "/answer", "/text"):
        r = client.post(path, json={"question": "how do I bake bread?"})
        assert r.status_code == 200, (path, r.text)
        assert "how do I bake bread?" in kw.checks[-1][0]  # the question reached the guard
        assert client.post(path, json={"question": "a bad one"}).json() == {"stage": "output"}
        assert client.post(path, json={"question": f"a {BAD_REQUEST}"}).json() == {"stage": "input"}
    assert ran == ["how do I bake bread?", "a bad one"]


def test_langchain_reads_the_same_response_fields(kw):
    from langchain_core.runnables import RunnableLambda

    for shape in ({"answer": BAD_RESPONSE}, {"text": BAD_RESPONSE}, Answer(answer=BAD_RESPONSE)):
        with pytest.raises(GuardViolation):
            kw.guard.wrap(RunnableLambda(lambda x, s=shape: s)).invoke({"question": "hi"})


def test_an_unreadable_return_type_is_refused_at_decoration(kw):
    with pytest.raises(ConfigurationError) as info:

        @kw.guard.check
        def ask(body: Question) -> Reply:
            raise AssertionError("never decorated")

    message = str(info.value)
    assert 'extract={"output": lambda result: result.reply_text}' in message and "Reply" in message

    @kw.guard.check(extract={"output": lambda result: result.reply_text})
    def fixed(body: Question) -> Reply:
        return Reply(reply_text=BAD_RESPONSE)

    with pytest.raises(GuardViolation):
        fixed(Question(question="hi"))
    kw.guard.check(output=False)(lambda body: None)  # input-only needs no response field


def test_an_unannotated_unreadable_response_names_the_fix(kw):
    ran = []

    @kw.guard.check
    def ask(question: str):
        ran.append(1)
        return Reply(reply_text="hi")

    with pytest.raises(ConfigurationError, match=r'extract=\{"output": lambda result'):
        ask("hello")


def test_a_body_without_request_fields_is_refused_at_decoration(kw):
    class Settings(BaseModel):
        temperature: float
        user_name: str

    @dataclass
    class Job:
        id: int

    for annotation in (Settings, Job):
        with pytest.raises(ConfigurationError, match="extract=lambda body: body.<field>"):

            def handler(body):
                return "x"

            handler.__annotations__ = {"body": annotation}
            kw.guard.check(handler)

    class WithPhoto(BaseModel):  # an image field makes it a request
        photo_b64: str

    def photo_handler(body):
        return "x"

    photo_handler.__annotations__ = {"body": WithPhoto}
    kw.guard.check(output=False)(photo_handler)
