"""``python -m guardrail.eval {run,score,report,list,threshold}`` (also ``python -m guardrail eval ...``).

Commands are registered in :data:`EVAL_COMMANDS`. Exit codes: 0 done, 2 error (bad arguments,
unknown benchmark, malformed data or predictions file, the model cannot be loaded).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from guardrail.cli import add_backend_arguments, guard_from_args, run_handler
from guardrail.eval.score import PROTOCOLS

__all__ = ["EVAL_COMMANDS", "add_eval", "main"]

EXIT_OK, EXIT_ERROR = 0, 2

Handler = Callable[[argparse.Namespace], int]


def _data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None,
        help="benchmark data directory (holding benchmarks/); default: $GUARDRAIL_DATA_DIR, else ./data",
    )  # fmt: skip


# ------------------------------------------------------------------------------------- run
def add_run(parser: argparse.ArgumentParser) -> Handler:
    """Run a guard over benchmarks and write one predictions file per benchmark."""
    parser.description = (
        "Run a guard over benchmarks; writes OUT/<benchmark>.jsonl (one row per sample) and OUT/run.json. "
        "Re-running with the same --out resumes where it stopped."
    )
    add_backend_arguments(parser)
    parser.add_argument("--benchmarks", nargs="+", required=True, metavar="NAME_OR_PATH",
                        help="registered names (see the list command) or files, as [NAME=][FORMAT:]PATH")  # fmt: skip
    parser.add_argument("--out", required=True, help="output folder")
    _data_dir_argument(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="samples per model call (default 8)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of each benchmark")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    return _run


def _run(args: argparse.Namespace) -> int:
    from guardrail.eval.registry import load_benchmark
    from guardrail.eval.run import console_progress, run_benchmarks

    if args.batch_size < 1 or (args.limit is not None and args.limit < 0):
        print("error: --batch-size must be >= 1 and --limit >= 0", file=sys.stderr)
        return EXIT_ERROR
    benchmarks = [load_benchmark(name, args.data_dir) for name in args.benchmarks]  # before the model loads
    guard = guard_from_args(args)
    try:
        results = run_benchmarks(guard, benchmarks, args.out, batch_size=args.batch_size, limit=args.limit,
                                 progress=console_progress(not args.no_progress))  # fmt: skip
    finally:
        guard.close()
    for r in results:
        print(f"{r.benchmark}: {r.written} new, {r.skipped} already done, {r.total} selected -> {r.path}")
    return EXIT_OK


# ----------------------------------------------------------------------------------- score
def _load_reports(paths: Sequence[str], names: Sequence[str] | None, protocol: str,  # noqa: ANN202
                  args: argparse.Namespace | None = None):  # fmt: skip
    from guardrail.errors import ConfigurationError
    from guardrail.eval.predictions import discover, read_predictions
    from guardrail.eval.score import score_sets

    if names and len(names) != len(paths):
        raise ConfigurationError(f"{len(names)} --names for {len(paths)} --predictions")
    policy, mapping = _category_options(args)
    reports = []
    for i, path in enumerate(paths):
        sets = [read_predictions(p) for p in discover(path)]
        reports.append(score_sets(sets, protocol, guard=names[i] if names else None, source=os.fspath(path),
                                  policy=policy, category_map=mapping))  # fmt: skip
    return reports


def _category_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default=None, metavar="NAME_OR_FILE",
                        help="score categories against this policy (a built-in name or a policy YAML); "
                             "default: the guard's, recorded by run")  # fmt: skip
    parser.add_argument("--category-map", default=None, metavar="FILE",
                        help="YAML/JSON {category: [codes]} or {benchmark: {category: [codes]}} mapping "
                             "benchmarks' category names to the policy's codes (default: built-in maps)")  # fmt: skip


def _category_options(args: argparse.Namespace | None):  # noqa: ANN202
    """The ``--policy`` and ``--category-map`` of a score/report command (None when absent)."""
    from pathlib import Path

    from guardrail.errors import ConfigurationError
    from guardrail.policies import Policy, get_policy

    if args is None:
        return None, None
    policy = mapping = None
    if getattr(args, "policy", None):
        policy = Policy.from_yaml(args.policy) if Path(args.policy).is_file() else get_policy(args.policy)
    if getattr(args, "category_map", None):
        import yaml

        try:
            mapping = yaml.safe_load(Path(args.category_map).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"--category-map {args.category_map}: {exc}") from None
        if not isinstance(mapping, dict):
            raise ConfigurationError(f"--category-map {args.category_map}: expected a mapping")
    return policy, mapping


def add_score(parser: argparse.ArgumentParser) -> Handler:
    """Score predictions: per-benchmark F1, precision, recall, and the papers' weighted averages."""
    parser.description = (
        "Score one guard's predictions (a file or an OUT folder of `run`, or GuardReasoner "
        "<Benchmark>/generated_predictions.jsonl folders)."
    )
    parser.add_argument("--predictions", required=True, metavar="FILE_OR_DIR")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="strict",
                        help="strict (default): a parse failure counts once as wrong; guardreasoner: the "
                             "GuardReasoner papers' scorer, quirks included; omni: GuardReasoner-Omni's "
                             "scorer (per-modality averages)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    parser.add_argument("--name", default=None, help="the guard's name in the report (default: the model)")
    parser.add_argument("--out", action="append", default=[], metavar="FILE",
                        help="also write a report: .md, .json or .png (repeatable)")  # fmt: skip
    _category_arguments(parser)
    return _score


def _score(args: argparse.Namespace) -> int:
    from guardrail.eval.report import to_json, to_markdown, write_report

    reports = _load_reports([args.predictions], [args.name] if args.name else None, args.protocol, args)
    for out in args.out:
        write_report(reports, out)
    print(to_json(reports) if args.json else to_markdown(reports))
    return EXIT_OK


# ---------------------------------------------------------------------------------- report
def add_report(parser: argparse.ArgumentParser) -> Handler:
    """Compare several guards: markdown, JSON and PNG reports of their predictions."""
    parser.description = "Score several guards' predictions and write side-by-side reports."
    parser.add_argument("--predictions", nargs="+", required=True, metavar="FILE_OR_DIR",
                        help="one predictions folder (or file) per guard")  # fmt: skip
    parser.add_argument(
        "--names", nargs="+", default=None, help="a name per --predictions (default: the model)"
    )
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="strict")
    parser.add_argument(
        "--out", nargs="+", required=True, metavar="FILE", help="report files: .md, .json, .png"
    )
    _category_arguments(parser)
    return _report


def _report(args: argparse.Namespace) -> int:
    from guardrail.eval.report import write_report

    reports = _load_reports(args.predictions, args.names, args.protocol, args)
    for out in args.out:
        print(f"wrote {write_report(reports, out)}")
    return EXIT_OK


def add_compare(parser: argparse.ArgumentParser) -> Handler:
    """Compare guards side by side: F1 per benchmark, tokens and latency per check, agreement."""
    parser.description = (
        "Score several guards' predictions (one `run` folder each: any family, fast or reasoning) and "
        "print them side by side; --out also writes .md, .json or .png reports."
    )
    parser.add_argument("--predictions", nargs="+", required=True, metavar="FILE_OR_DIR")
    parser.add_argument(
        "--names", nargs="+", default=None, help="a name per --predictions (default: the model)"
    )
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="strict")
    parser.add_argument("--out", nargs="*", default=[], metavar="FILE", help="report files: .md, .json, .png")
    return _compare


def _compare(args: argparse.Namespace) -> int:
    from guardrail.eval.report import to_markdown, write_report

    reports = _load_reports(args.predictions, args.names, args.protocol)
    for out in args.out:
        print(f"wrote {write_report(reports, out)}", file=sys.stderr)
    print(to_markdown(reports))
    return EXIT_OK


# ------------------------------------------------------------------------------- threshold
def add_threshold(parser: argparse.ArgumentParser) -> Handler:
    """Pick a fast-mode threshold for a target false-positive rate from scored predictions."""
    parser.description = (
        "Threshold curves (ROC, precision/recall) of the scores in fast- or cascade-mode predictions, and "
        "the threshold with the best recall whose false-positive rate is at most --target-fpr."
    )
    parser.add_argument("--predictions", required=True, metavar="FILE_OR_DIR")
    parser.add_argument(
        "--target-fpr", type=float, required=True, help="highest false-positive rate allowed, 0-1"
    )
    parser.add_argument("--task", choices=["request", "response", "refusal"], default="request",
                        help="task whose score is used (default: request)")  # fmt: skip
    parser.add_argument(
        "--plot", default=None, metavar="PNG", help="also draw the ROC and PR curves to this file"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return _threshold


def _threshold(args: argparse.Namespace) -> int:
    import json

    from guardrail.errors import PredictionsError
    from guardrail.eval.metrics import average_precision, pick_threshold, roc_auc, threshold_curve
    from guardrail.eval.predictions import discover, read_predictions
    from guardrail.eval.report import curves_png
    from guardrail.eval.score import outcomes

    if not 0.0 <= args.target_fpr <= 1.0:
        print("error: --target-fpr must be between 0 and 1", file=sys.stderr)
        return EXIT_ERROR
    sets = [read_predictions(p) for p in discover(args.predictions)]
    groups = {s.benchmark: [s] for s in sets if outcomes([s], args.task).scored}
    if not groups:
        raise PredictionsError(f"no sample has a {args.task} score: run the guard with --mode fast or cascade",
                               path=str(args.predictions))  # fmt: skip
    if len(groups) > 1:
        groups["all (pooled)"] = [s for g in list(groups.values()) for s in g]
    rows, curves, chosen = [], {}, {}
    for name, group in groups.items():
        o = outcomes(group, args.task)
        choice = pick_threshold(o, args.target_fpr)
        curves[name], chosen[name] = threshold_curve(o), choice
        rows.append({"benchmark": name, "n": len(o.scored), "roc_auc": roc_auc(o),
                     "average_precision": average_precision(o), **choice.as_dict()})  # fmt: skip
    if args.plot:
        curves_png(curves, args.plot, chosen)
    if args.json:
        print(json.dumps({"task": args.task, "target_fpr": args.target_fpr, "results": rows}, indent=2))
        return EXIT_OK

    def fmt(v: float | None, digits: int = 4) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    print(f"# Threshold for {args.task} at false-positive rate <= {args.target_fpr:g}\n")
    print("| benchmark | n | ROC AUC | avg precision | threshold | TPR (recall) | FPR | precision |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['benchmark']} | {r['n']} | {fmt(r['roc_auc'])} | {fmt(r['average_precision'])} | "
              f"{fmt(r['threshold'], 6)} | {fmt(r['tpr'])} | {fmt(r['fpr'])} | {fmt(r['precision'])} |")  # fmt: skip
    return EXIT_OK


# ------------------------------------------------------------------------------------ list
def add_list(parser: argparse.ArgumentParser) -> Handler:
    """List the registered benchmarks and whether their data is present."""
    _data_dir_argument(parser)
    return _list


def _list(args: argparse.Namespace) -> int:
    from guardrail.errors import ConfigurationError
    from guardrail.eval.registry import BENCHMARKS, resolve_data_dir

    try:
        root = resolve_data_dir(args.data_dir)
    except ConfigurationError as exc:
        root = None
        print(f"note: {exc}", file=sys.stderr)
    width = max(map(len, BENCHMARKS))
    for name, spec in BENCHMARKS.items():
        present = "?" if root is None else ("yes" if (root / spec.path).exists() else "missing")
        print(f"{name:<{width}}  {present:<7}  {spec.description}")
    return EXIT_OK


#: Sub-command name -> function filling its parser and returning the handler.
EVAL_COMMANDS: dict[str, Callable[[argparse.ArgumentParser], Handler]] = {
    "run": add_run,
    "score": add_score,
    "report": add_report,
    "compare": add_compare,
    "list": add_list,
    "threshold": add_threshold,
}


def add_eval(parser: argparse.ArgumentParser) -> Handler:
    """Evaluate guards on benchmarks: run, score, report, list."""
    parser.description = "Evaluate guards on benchmarks: run them, score their predictions, compare, list."
    sub = parser.add_subparsers(dest="eval_command", metavar="COMMAND", required=True)
    handlers = {}
    for name, add in EVAL_COMMANDS.items():
        handlers[name] = add(sub.add_parser(name, help=(add.__doc__ or "").strip().split("\n")[0]))

    def dispatch(args: argparse.Namespace) -> int:
        return handlers[args.eval_command](args)

    return dispatch


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = argparse.ArgumentParser(prog="python -m guardrail.eval")
    handler = add_eval(parser)
    return run_handler(handler, parser.parse_args(argv))
