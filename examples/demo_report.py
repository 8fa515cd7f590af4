"""Part 3 of the main job, the report: the table of verdicts and what it means."""

from __future__ import annotations

from demo_common import REPO, TRAIN, Console
from demo_guard import DemoGuard, describe_categories, describe_heldout
from demo_traffic import Row


def print_table(console: Console, rows: list[Row]) -> None:
    show_path = any(r.path for r in rows)
    show_categories = any(r.categories for r in rows)
    header = ["channel", "sample", "input kind", "verdict", "checks", "guard ms", "decided by"]
    if show_path:
        header.append("path")
    if show_categories:
        header.append("categories")
    table = [header]
    for r in rows:
        line = [r.channel, r.sample, r.kind, r.verdict, str(r.checks or "-"),
                f"{r.latency_ms:.0f}" if r.checks else "-", r.decided_by]  # fmt: skip
        if show_path:
            line.append(r.path or "-")
        if show_categories:
            line.append(category_cell(r))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {4, 5}
    for i, line in enumerate(table):
        cells = [
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        console.say("  ".join(cells).rstrip())
        if i == 0:
            console.say("  ".join("-" * w for w in widths))


def category_cell(r: Row) -> str:
    """The verdict's category codes; where the channel answers as OpenAI moderation, the keys they
    map to (``theft -> illicit``)."""
    if not r.categories:
        return "-"
    codes = ",".join(r.categories)
    return f"{codes} -> {','.join(r.openai_categories)}" if r.openai_categories else codes


def gguf_parity(rows: list[Row]) -> tuple[int, int] | None:
    """(same, compared): llama.cpp's verdicts against the server's, which runs the transformers
    backend on the same model; both check each request (and response) in one call."""
    gguf = {r.sample: r.verdict for r in rows if r.channel == "llama.cpp" and r.checks}
    hf = {r.sample: r.verdict for r in rows if r.channel == "server + OpenAI client" and r.checks}
    common = sorted(gguf.keys() & hf.keys())
    return (sum(gguf[k] == hf[k] for k in common), len(common)) if common else None


def print_report(console: Console, demo: DemoGuard, rows: list[Row], problems: list[str]) -> None:
    """The table, what its columns mean, the llama.cpp/transformers agreement, the guard's
    held-out F1 (a warning for the tiny one) and the problems."""
    print_table(console, rows)
    console.say("")
    console.say(
        "checks: guard calls per request (the app channels check the request, then the reply with it);"
    )
    console.say(
        "decided by: 'model' = read from the guard's output, 'policy' = unreadable output, blocked (fail closed)."
    )
    if any(r.categories for r in rows):
        console.say(
            "categories: the codes of the guard's policy the verdict names (Verdict.categories; "
            "'-': none); on /v1/moderations, -> the OpenAI keys they map to."
        )
    if any(r.path for r in rows):
        console.say(
            "path: 'reasoning' = the model reasoned, then answered; 'fast' = label probabilities, no "
            "reasoning (--mode)."
        )
    parity = gguf_parity(rows)
    if parity:
        console.say(
            f"llama.cpp on the GGUF export and transformers (behind the server) agree on {parity[0]} of "
            f"{parity[1]} samples."
        )
    if demo.tiny:
        h = demo.heldout or {}
        console.say("")
        console.say(f"NOTE: this is a TINY demo guard (~0.2M parameters, trained in "
                    f"{demo.training_seconds or 0:.0f}s on {TRAIN.relative_to(REPO)}).")  # fmt: skip
        console.say(f"      Held-out F1 (harmful = positive) on {h.get('samples', '?')} unseen samples: "
                    f"{describe_heldout(h)} (it varies between machines: see the README).")  # fmt: skip
        for line in describe_categories(h):
            console.say(f"      {line}")
        console.say(
            "      It shows the whole product working, not a guard to rely on: set GUARDRAIL_MODEL to a"
        )
        console.say(
            "      GuardReasoner-VL model (e.g. yueliu1999/GuardReasoner-VL-Eco-3B) for real verdicts."
        )
    elif demo.heldout:
        console.say(f"\nHeld-out F1 of {demo.model} on the demo set: {describe_heldout(demo.heldout)}.")
        for line in describe_categories(demo.heldout):
            console.say(line)
    for p in problems:
        console.say(f"problem: {p}")
