"""Reports of one or several guards side by side: markdown, JSON, PNG chart.

:func:`write_report` picks the format from the file name (``.md``, ``.json``, ``.png``). The
chart needs matplotlib (``pip install "guardrail-vl[eval]"``); it is imported only to draw, and
drawn on an Agg canvas without pyplot, so an app's matplotlib backend is left alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError
from guardrail.eval.agreement import Agreement, agreement
from guardrail.eval.metrics import ThresholdChoice, ThresholdCurve
from guardrail.eval.score import ScoreReport
from guardrail.profiles.labels import TASKS

__all__ = ["REPORT_FORMATS", "curves_png", "to_json", "to_markdown", "to_png", "write_report"]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(reports: Sequence[ScoreReport]) -> list[tuple[str, str, str, int]]:
    """(benchmark, task, modality, n) in task order, first seen first."""
    seen: dict[tuple[str, str], tuple[str, str, str, int]] = {}
    for task in TASKS:
        for report in reports:
            for r in report.results:
                if r.task == task and (r.benchmark, task) not in seen:
                    seen[(r.benchmark, task)] = (r.benchmark, task, r.modality, r.n)
    return list(seen.values())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _detail(report: ScoreReport) -> list[str]:
    header = ["benchmark", "task", "modality", "n", "gold positive / negative", "F1", "precision", "recall",
              "parse failures", "errors", "mean output tokens", "mean latency (ms)"]  # fmt: skip
    scored = any(r.extra.get("roc_auc") is not None for r in report.results)  # scores (fast/cascade)
    if scored:
        header += ["ROC AUC", "avg precision"]
    rows = [
        [r.benchmark, r.task, r.modality, str(r.n), _balance(r), _fmt(r.f1), _fmt(r.precision), _fmt(r.recall),
         str(r.parse_failures), str(r.errors), _fmt(r.mean_output_tokens, 1), _fmt(r.mean_latency_ms, 1)]
        + ([_fmt(r.extra.get("roc_auc"), 4), _fmt(r.extra.get("average_precision"), 4)] if scored else [])
        for r in report.results
    ]  # fmt: skip
    averages = [[f"average ({a.scope})", a.task, "", str(a.weight), "", _fmt(a.f1), "", "", "", "", "", ""]
                + (["", ""] if scored else []) for a in report.averages]  # fmt: skip
    return _table(header, rows + averages)


def _balance(r: Any) -> str:
    """``3 / 9 (25% positive)``: the gold class balance of a benchmark's task."""
    if r.positives is None:
        return "-"
    share = f" ({100 * r.positives / r.n:.0f}% {r.positive})" if r.n else ""
    return f"{r.positives} / {r.n - r.positives}{share}"


def agreements(reports: Sequence[ScoreReport]) -> list[Agreement]:
    """Per-sample agreement of every guard with the first one (see :mod:`guardrail.eval.agreement`)."""
    if len(reports) < 2 or not reports[0].predictions:
        return []
    first = reports[0]
    out = []
    for other in reports[1:]:
        if other.predictions:
            out += agreement(first.predictions, other.predictions, first.guard, other.guard)
    return out


def _agreement_lines(reports: Sequence[ScoreReport]) -> list[str]:
    rows = agreements(reports)
    if not rows:
        return []
    header = ["guards", "benchmark", "task", "samples", "same label", "both right", "only first right",
              "only second right", "disagree on (ids)"]  # fmt: skip
    table = []
    for a in rows:
        ids = ", ".join(a.disagreeing[:10]) + (
            f" ... (+{len(a.disagreeing) - 10})" if len(a.disagreeing) > 10 else ""
        )
        table.append([f"{a.guard_a} vs {a.guard_b}", a.benchmark, a.task, str(a.samples),
                      f"{a.agree} ({a.rate:.0f}%)", str(a.both_right), str(a.only_a_right),
                      str(a.only_b_right), ids or "-"])  # fmt: skip
    return [
        "## Per-sample agreement",
        "",
        "Samples both guards scored, paired by id; a missing label (parse failure) agrees only with another.",
        "",
        *_table(header, table),
        "",
    ]


def _cost_lines(reports: Sequence[ScoreReport]) -> list[str]:
    """Tokens and latency per check, side by side (what each guard's F1 costs)."""
    header = ["benchmark", "task", *(f"{r.guard} {what}" for r in reports for what in ("tokens", "ms"))]
    rows = []
    for bench, task, _modality, _n in _rows(reports):
        cells = []
        for report in reports:
            s = report.get(bench, task)
            cells += [_fmt(s.mean_output_tokens, 1) if s else "-", _fmt(s.mean_latency_ms, 1) if s else "-"]
        rows.append([bench, task, *cells])
    return ["## Cost per check side by side", "",
            "Mean output tokens and mean latency per check (a batch's wall time over its size); fast "
            "mode writes no tokens.", "", *_table(header, rows), ""]  # fmt: skip


def to_markdown(reports: Sequence[ScoreReport]) -> str:
    """One table per guard (gold class balance, F1, precision, recall, failures, tokens, latency)
    with the sample-weighted averages; with several guards, an F1 comparison table and the
    per-sample agreement of each guard with the first come first."""
    if not reports:
        raise ConfigurationError("nothing to report")
    protocol = ", ".join(sorted({r.protocol for r in reports}))
    lines = [f"# Guard evaluation ({protocol} protocol)", "",
             "F1 in %, positive class: harmful (request, response) or refusal.", ""]  # fmt: skip
    if len(reports) > 1:
        header = ["benchmark", "task", "modality", "n", *(f"{r.guard} F1" for r in reports)]
        rows = []
        for bench, task, modality, n in _rows(reports):
            cells = []
            for report in reports:
                s = report.get(bench, task)
                cells.append(_fmt(s.f1) if s else "-")
            rows.append([bench, task, modality, str(n), *cells])
        for task in TASKS:
            for scope in ("text", "all"):
                avgs = [r.average(task, scope) for r in reports]
                if any(avgs):
                    rows.append(
                        [f"average ({scope})", task, "", "", *(_fmt(a.f1) if a else "-" for a in avgs)]
                    )
        lines += ["## F1 side by side", "", *_table(header, rows), ""]
        lines += _cost_lines(reports)
        lines += _agreement_lines(reports)
    for report in reports:
        lines += [f"## {report.guard}", "", f"Predictions: `{report.source}`", "", *_detail(report), ""]
        lines += _category_lines(report)
    return "\n".join(lines)


def _category_lines(report: ScoreReport) -> list[str]:
    """The per-category table of one guard (benchmarks with category labels only)."""
    if not report.categories:
        return []
    header = ["benchmark", "category", "policy codes", "n", "support", "predicted", "precision", "recall",
              "F1"]  # fmt: skip
    rows = []
    notes = []
    for c in report.categories:
        for s in (*c.scores, *((c.micro,) if c.micro else ())):
            name = "all (micro)" if s.category == "micro" and not s.codes else s.category
            rows.append([c.benchmark, name, ", ".join(s.codes) or "-", str(s.n), str(s.support), str(s.predicted),
                         _fmt(s.precision), _fmt(s.recall), _fmt(s.f1)])  # fmt: skip
        if c.unmapped:
            notes.append(f"- {c.benchmark}: not scored, no code of the policy: {', '.join(c.unmapped)}")
        if c.unknown_codes:
            notes.append(f"- {c.benchmark}: {c.unknown_codes} verdict(s) named codes not in the policy")
    policy = report.categories[0].policy
    return [
        f"### {report.guard}: per category (policy {policy})",
        "",
        "Samples with category labels; a category is predicted when the verdict names any of its "
        "codes; a failed check names none. Percent.",
        "",
        *_table(header, rows),
        *([""] + notes if notes else []),
        "",
    ]


def to_json(reports: Sequence[ScoreReport]) -> str:
    """``{"protocol": ..., "guards": [ScoreReport.as_dict(), ...], "agreement": [...]}`` (the
    agreement with the first guard, when there are several)."""
    protocols = sorted({r.protocol for r in reports})
    data: dict[str, Any] = {"protocol": protocols[0] if len(protocols) == 1 else protocols,
                            "guards": [r.as_dict() for r in reports]}  # fmt: skip
    pairs = agreements(reports)
    if pairs:
        data["agreement"] = [a.as_dict() for a in pairs]
    return json.dumps(data, indent=2)


def to_png(reports: Sequence[ScoreReport], path: str | os.PathLike[str]) -> None:
    """A bar chart of F1 per benchmark and task, one bar per guard, averages at the right."""
    require("matplotlib", extra="eval", feature="the PNG report")
    from matplotlib.figure import Figure

    if not reports:
        raise ConfigurationError("nothing to report")
    groups: list[tuple[str, list[float | None]]] = []
    for bench, task, _, _ in _rows(reports):
        values = []
        for report in reports:
            s = report.get(bench, task)
            values.append(s.f1 if s else None)
        groups.append((f"{bench}\n({task})", values))
    for task in TASKS:
        avgs = [r.average(task, "all") for r in reports]
        if any(avgs):
            groups.append((f"average\n({task})", [a.f1 if a else None for a in avgs]))
    width = 0.8 / len(reports)
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(reports)) ** 0.5 + 2), 4.8), dpi=100)
    ax = fig.add_subplot()
    for i, report in enumerate(reports):
        xs = [g + (i - (len(reports) - 1) / 2) * width for g in range(len(groups))]
        ys = [v[i] if v[i] is not None else 0.0 for _, v in groups]
        bars = ax.bar(xs, ys, width=width, label=report.guard)
        ax.bar_label(bars, labels=[_fmt(v[i], 1) for _, v in groups], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8, rotation=30, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("F1 (%)")
    protocol = ", ".join(sorted({r.protocol for r in reports}))
    ax.set_title(f"F1 per benchmark ({protocol} protocol)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def curves_png(curves: Mapping[str, ThresholdCurve], path: str | os.PathLike[str],
               chosen: Mapping[str, ThresholdChoice] | None = None) -> Path:  # fmt: skip
    """ROC and precision/recall curves side by side, one line per named curve; a chosen
    threshold (:func:`~guardrail.eval.metrics.pick_threshold`) is marked on its line."""
    require("matplotlib", extra="eval", feature="the PNG curves")
    from matplotlib.figure import Figure

    if not curves:
        raise ConfigurationError("no scored samples to draw (fast or cascade mode predictions have scores)")
    fig = Figure(figsize=(11, 4.8), dpi=100)
    roc_ax, pr_ax = fig.subplots(1, 2)
    for name, curve in curves.items():
        roc, pr = curve.roc(), curve.pr()
        line = roc_ax.plot([x for x, _ in roc], [y for _, y in roc], label=name, drawstyle="default")[0]
        pr_ax.step([x for x, _ in pr], [y for _, y in pr], where="pre", label=name, color=line.get_color())
        choice = (chosen or {}).get(name)
        if choice is not None and choice.threshold is not None:
            roc_ax.plot([choice.fpr], [choice.tpr], "o", color=line.get_color())
            roc_ax.annotate(f"t={choice.threshold:.3g}", (choice.fpr, choice.tpr), fontsize=7,
                            textcoords="offset points", xytext=(4, -10))  # fmt: skip
            pr_ax.plot([choice.recall], [choice.precision], "o", color=line.get_color())
    roc_ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
    roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC", xlim=(0, 1),
               ylim=(0, 1.02))  # fmt: skip
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision / recall", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(os.fspath(out), format="png")
    return out


def _write_text(text: str, path: Path) -> None:
    path.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")


#: File suffix -> writer(reports, path).
REPORT_FORMATS = {
    ".md": lambda reports, path: _write_text(to_markdown(reports), path),
    ".json": lambda reports, path: _write_text(to_json(reports), path),
    ".png": to_png,
}


def write_report(reports: Sequence[ScoreReport], path: str | os.PathLike[str]) -> Path:
    """Write ``reports`` to ``path`` in the format its suffix names (``.md``, ``.json``, ``.png``)."""
    path = Path(path)
    writer = REPORT_FORMATS.get(path.suffix.lower())
    if writer is None:
        raise ConfigurationError(
            f"unknown report format {path.suffix or path.name!r}; use .md, .json or .png"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(reports, path)
    return path
