"""Part 2 of the main job, the traffic: the sample requests (``examples/samples.jsonl``), the
app's scripted model, and the table rows that record what the guard decided for each."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_common import SAMPLES

from guardrail import Verdict
from guardrail.observers import RequestInfo

REFUSAL = "Sorry, I can't help with that."
DEFAULT_REPLY = "Sure! Here is a short, friendly answer."


@dataclass(frozen=True)
class Traffic:
    """One request of the sample app traffic; ``response`` is what the app's model answers."""

    name: str
    prompt: str | None
    images: tuple[Path, ...] = ()
    response: str | None = None

    @property
    def kind(self) -> str:
        kind = ("text+image" if self.prompt else "image") if self.images else "text"
        if self.response is None:
            return kind
        return "prompt+response" if kind == "text" else f"{kind}+response"

    def data_urls(self) -> list[str]:
        return [f"data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" for p in self.images]

    def openai_messages(self) -> list[dict[str, Any]]:
        """The request as an OpenAI-style chat turn (text and image_url parts)."""
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": u}} for u in self.data_urls()
        ]
        if self.prompt:
            parts.append({"type": "text", "text": self.prompt})
        return [{"role": "user", "content": parts if self.images else self.prompt}]


def load_traffic(path: Path = SAMPLES) -> list[Traffic]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            s = json.loads(line)
            out.append(
                Traffic(
                    name=s["name"],
                    prompt=s.get("prompt"),
                    images=tuple(path.parent / p for p in s.get("images", [])),
                    response=s.get("response"),
                )
            )
    return out


@dataclass
class Row:
    """One line of the table."""

    channel: str
    sample: str
    kind: str
    verdict: str = "ERROR"  # allow | BLOCK | BLOCK (input) | BLOCK (output) | ERROR | skipped
    checks: int = 0
    latency_ms: float = 0.0
    decided_by: str = "-"
    path: str | None = None
    error: str | None = None
    reply: str | None = None
    #: codes of the violated policy categories (``Verdict.categories``) of the deciding check
    categories: list[str] = field(default_factory=list)
    #: the OpenAI moderation keys they map to, where the channel answers in that format
    openai_categories: list[str] | None = None


def row_from_checks(channel: str, t: Traffic, checks: list[tuple[str, Verdict]]) -> Row:
    """Summarise the checks one call made: the blocking one decides, else the last one."""
    from guardrail.integrations.policy import blocks

    row = Row(channel, t.name, t.kind, checks=len(checks))
    if not checks:
        row.error = "no guard check was recorded"
        return row
    row.latency_ms = sum(v.latency_ms for _, v in checks)
    deciding = next(((s, v) for s, v in checks if blocks(v, s)), None)
    stage, verdict = deciding or checks[-1]
    row.verdict = f"BLOCK ({stage})" if deciding else "allow"
    row.decided_by = verdict.decided_by
    row.path = getattr(verdict, "path", None)  # fast/reasoning, where the guard has speed modes
    row.categories = list(verdict.categories)
    return row


def row_from_verdict(
    channel: str, t: Traffic, verdict: Verdict | dict[str, Any], openai_categories: list[str] | None = None
) -> Row:
    v = verdict if isinstance(verdict, dict) else verdict.model_dump()
    return Row(
        channel, t.name, t.kind, verdict="allow" if v["allowed"] else "BLOCK", checks=1,
        latency_ms=v["latency_ms"], decided_by=v["decided_by"], path=v.get("path"),
        categories=list(v.get("categories") or ()), openai_categories=openai_categories,
    )  # fmt: skip


class CheckLog:
    """A verdict observer (``guard.add_observer``) keeping the ``(stage, verdict)`` of every
    ``@guard.check`` check, so the table can show what the decorator decided."""

    def __init__(self) -> None:
        self.checks: list[tuple[str, Verdict]] = []

    def __call__(self, verdict: Verdict, info: RequestInfo) -> None:
        if info.source == "decorator" and info.stage is not None:
            self.checks.append((info.stage, verdict))


class StandInLLM:
    """The app's model, scripted: answers with the sample's response (or a friendly default)."""

    def __init__(self) -> None:
        self.reply = DEFAULT_REPLY

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        return self.reply
