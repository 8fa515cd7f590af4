"""How the LangChain runnables record each guard check for tracers (used by
:mod:`guardrail.integrations.langchain`; needs langchain-core).

Every check becomes a child run of the guard runnable's run, named ``guardrail_<stage>_check``,
with filterable tags (``guardrail:category:S1`` per violated category) and metadata (stage,
blocked, harmful labels, ``guardrail_categories``, ``guardrail_policy``...) and the full verdict as
its output, and a custom event
:data:`TRACE_EVENT` carrying the same output (see docs/integrations.md, "Tracing").
"""

from __future__ import annotations

from typing import Any

from guardrail.integrations.policy import blocks
from guardrail.verdict import Verdict

__all__ = ["TRACE_EVENT", "atrace", "trace", "trace_payload"]

#: The custom event dispatched for every check: ``{"stage": ..., "verdict": {...}}``.
TRACE_EVENT = "guardrail_verdict"


def trace_payload(stage: str, verdict: Verdict) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The tags, metadata and outputs recorded for one check."""
    blocked = blocks(verdict, stage)
    categories = list(verdict.categories)
    tags = [
        "guardrail",
        f"guardrail:{stage}",
        "guardrail:blocked" if blocked else "guardrail:allowed",
        *(f"guardrail:category:{code}" for code in categories),
    ]
    metadata = {
        "guardrail_stage": stage,
        "guardrail_blocked": blocked,
        "guardrail_harmful": verdict.harmful,
        "guardrail_request_harmful": verdict.request_harmful,
        "guardrail_response_harmful": verdict.response_harmful,
        "guardrail_categories": categories,
        "guardrail_flagged": verdict.flagged,
        "guardrail_policy": verdict.policy,
        "guardrail_decided_by": verdict.decided_by,
        "guardrail_model": verdict.model,
        "guardrail_latency_ms": verdict.latency_ms,
    }
    return tags, metadata, {"stage": stage, "verdict": verdict.model_dump(mode="json")}


def trace(run_manager: Any, stage: str, verdict: Verdict) -> None:
    """Record one check under ``run_manager`` (a no-op without one)."""
    if run_manager is None:
        return
    tags, metadata, outputs = trace_payload(stage, verdict)
    child = run_manager.get_child()
    child.add_tags(tags, inherit=False)
    child.add_metadata(metadata, inherit=False)
    run = child.on_chain_start(None, {"stage": stage}, name=f"guardrail_{stage}_check")
    run.on_chain_end(outputs)
    child.on_custom_event(TRACE_EVENT, outputs, run_id=run_manager.run_id)


async def atrace(run_manager: Any, stage: str, verdict: Verdict) -> None:
    """Async twin of :func:`trace`."""
    if run_manager is None:
        return
    tags, metadata, outputs = trace_payload(stage, verdict)
    child = run_manager.get_child()
    child.add_tags(tags, inherit=False)
    child.add_metadata(metadata, inherit=False)
    run = await child.on_chain_start(None, {"stage": stage}, name=f"guardrail_{stage}_check")
    await run.on_chain_end(outputs)
    await child.on_custom_event(TRACE_EVENT, outputs, run_id=run_manager.run_id)
