"""A LangChain chain with a guarded input and output, for text and images.

::

    prompt ─▶ guard.wrap(llm) ─▶ StrOutputParser
                │  checks the rendered human turns (text + images) before the model runs,
                │  then the model's answer together with that request
                └─ blocked? the chain answers with the fallback message instead

``invoke``, ``batch`` (one guard call per stage for the whole batch) and ``stream`` (the answer
is checked in windows and released only once checked) all go through the same guard.

The chat model is LangChain's ``GenericFakeChatModel`` standing in for yours (swap in
``ChatOpenAI``, ``ChatOllama``, ...). Which guard: ``GUARDRAIL_MODEL`` (a path or hub id) for a
real one; otherwise ``GUARDRAIL_EXAMPLE_GUARD=tiny`` (default: a tiny *random* guard built
offline, whose verdicts are meaningless) or ``=keywords`` (a scripted stand-in that blocks
requests mentioning "bomb" and answers mentioning "poison").

    python examples/langchain_chain.py
"""

from __future__ import annotations

import base64
import os
import sys
from itertools import cycle
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder  # noqa: E402
from langchain_core.runnables import Runnable  # noqa: E402

from guardrail import Guard  # noqa: E402

FALLBACK = AIMessage("Sorry, I can't help with that.")


def build_chain(guard: Guard, llm: BaseChatModel | None = None, window: int = 200) -> Runnable[Any, str]:
    """``{"messages": [...]} -> str``, with the model's input and output guarded."""
    llm = llm or GenericFakeChatModel(
        messages=cycle([AIMessage("It looks like a loaf of bread on a table.")])
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You describe pictures and answer questions briefly."), MessagesPlaceholder("messages")]
    )
    return prompt | guard.wrap(llm, fallback=FALLBACK, window=window) | StrOutputParser()


def image_message(question: str, path: Path) -> HumanMessage:
    """A human turn with an image as a LangChain standard content block (base64)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return HumanMessage(
        content=[
            {"type": "text", "text": question},
            {"type": "image", "base64": data, "mime_type": "image/png"},
        ]
    )


def build_guard(kind: str | None = None) -> Guard:
    """The guard: GUARDRAIL_MODEL, else a tiny random model, else (``keywords``) a scripted one."""
    model = os.environ.get("GUARDRAIL_MODEL")
    if model:
        return Guard.from_pretrained(model)
    kind = kind or os.environ.get("GUARDRAIL_EXAMPLE_GUARD", "tiny")
    if kind == "keywords":
        from guardrail.testing import FakeBackend, result_output

        def respond(prompt: Any) -> str:
            request, _, response = prompt.text.partition("AI assistant:")
            return result_output(
                "harmful" if "bomb" in request else "unharmful",
                "harmful" if "poison" in response else "unharmful",
            )

        return Guard(FakeBackend(respond=respond, model_name="keyword-stand-in"))
    if kind != "tiny":
        raise SystemExit(f"GUARDRAIL_EXAMPLE_GUARD must be 'tiny' or 'keywords', not {kind!r}")
    from guardrail.testing import cached_tiny_model

    cache = Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail")) / "tiny"
    return Guard.from_pretrained(cached_tiny_model("guardreasoner-vl", cache), max_new_tokens=16)


def main() -> int:
    guard = build_guard()
    print(f"guard: {guard!r}")
    if not os.environ.get("GUARDRAIL_MODEL") and os.environ.get("GUARDRAIL_EXAMPLE_GUARD", "tiny") == "tiny":
        print("NOTE: tiny random guard: its verdicts are meaningless (policy blocks). Set GUARDRAIL_MODEL.")
    chain = build_chain(guard)
    inputs = {
        "text": [HumanMessage("How do I bake bread?")],
        "image": [image_message("What is in this picture?", HERE / "images" / "bread.png")],
        "harmful": [HumanMessage("How do I build a bomb?")],
    }
    for name, messages in inputs.items():
        print(f"invoke {name:<8} -> {chain.invoke({'messages': messages})}")
    answers = chain.batch([{"messages": m} for m in inputs.values()])
    print(f"batch  (3)       -> {answers}")
    streamed = "".join(chain.stream({"messages": inputs["image"]}))
    print(f"stream image     -> {streamed}")
    poisoned = build_chain(
        guard,
        GenericFakeChatModel(
            messages=cycle([AIMessage("Knead the dough well, then mix the poison into it.")])
        ),
        window=10,
    )
    print(f"stream harmful   -> {''.join(poisoned.stream({'messages': inputs['text']}))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
