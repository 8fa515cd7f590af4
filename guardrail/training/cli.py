"""``python -m guardrail.training {sft,sample,augment,rl,run,validate,card,push} --config recipe.yaml [flags]``.

Like TRL's ``TrlParser``: settings come from the YAML recipe, and command-line flags override
them (flags win). Every field of a command's config is a flag, spelled ``--max_steps`` or
``--max-steps``; list fields take several values (``--data a.jsonl b.jsonl``), booleans take
``true``/``false`` (a bare ``--flag`` means true), mappings take JSON. ``run`` takes the
recipe's top-level fields (``--model``, ``--output-dir``...) and any stage's fields as
``--<stage>.<field>`` (``--sft.max_steps 10``); so does ``validate``, which checks the data
without training (exit 0 clean, 1 rows would be dropped, 2 unusable). ``--print-config`` shows
the resolved settings and exits. Exit status: 0 done, 2 bad configuration or data, 130
interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Sequence
from typing import Any

from guardrail.training.config import Config, _unwrap_optional

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command -> (stage, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "sft": ("sft", "reasoning SFT: train a base model to reason and answer like a guard"),
    "sample": ("sample", "rejection sampling: keep the samples the model gets wrong k times out of k"),
    "augment": ("augment", "safety-aware concatenation: pair samples, merge texts and images"),
    "rl": ("rl", "online RL: GRPO with the guard rewards and a dynamic clip range"),
    "run": ("run", "the whole pipeline from one recipe (sft -> sample -> augment -> rl)"),
    "validate": ("run", "check the recipe's data without training: rows, labels, images, bad rows"),
    "card": ("card", "(re)write a trained guard's model card, with evaluation scores"),
    "push": ("push", "upload a trained guard to the Hugging Face Hub with its model card"),
}

EXIT_OK, EXIT_WARNINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_config_flags(
    parser: argparse.ArgumentParser | Any, cls: type[Config], prefix: str = "", skip: Sequence[str] = ()
) -> None:
    """Add one flag per field of ``cls`` (values stay text; the config coerces them)."""
    for name, tp, help_text, choices, default in cls.options():
        if name in skip:
            continue
        dest = f"{prefix}{name}"
        spellings = [f"--{dest}"]
        if "_" in dest:
            spellings.append("--" + dest.replace("_", "-"))
        inner, _ = _unwrap_optional(tp)
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
        if typing.get_origin(inner) is list or inner is list:
            kwargs["nargs"] = "+"
        elif inner is bool:
            kwargs.update(nargs="?", const="true")
        extra = f" [{', '.join(choices)}]" if choices else ""
        shown = default if not isinstance(default, str) or default else '""'
        kwargs["help"] = f"{help_text}{extra} (default: {shown})".replace("%", "%%")
        kwargs["metavar"] = name.upper() if not choices else "{" + ",".join(choices) + "}"
        parser.add_argument(*spellings, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from guardrail.training.recipe import STAGES, RecipeConfig, _config_classes

    parser = argparse.ArgumentParser(
        prog="python -m guardrail.training", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    classes = _config_classes()
    for command, (stage, help_text) in COMMANDS.items():
        p = sub.add_parser(command, help=help_text, description=help_text)
        if command == "push":
            _push_arguments(p)
            continue
        if command != "card":
            p.add_argument("--config", help="YAML recipe (training/*.yaml); flags override it")
            p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
        if command == "card":
            p.add_argument("--model", required=True, help="a model directory written by sft or rl")
            p.add_argument(
                "--eval",
                default=None,
                metavar="PREDICTIONS",
                help="predictions file or directory of `python -m guardrail eval run` to fill the evaluation table",
            )
            continue
        if command in ("run", "validate"):
            add_config_flags(p, RecipeConfig, skip=STAGES)
            for name in STAGES:
                group = p.add_argument_group(f"{name} settings (--{name}.FIELD VALUE)")
                add_config_flags(group, classes[name], prefix=f"{name}.")
        else:
            add_config_flags(p, classes[stage])
    return parser


def _push_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="a model directory written by sft or rl")
    p.add_argument(
        "--repo", required=True, metavar="ORG/NAME", help="Hugging Face model repo (created if missing)"
    )
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repo private (an existing repo keeps its visibility)",
    )
    p.add_argument(
        "--revision",
        default=None,
        metavar="BRANCH",
        help="branch to push to (created if missing; default main)",
    )
    p.add_argument(
        "--eval", default=None, metavar="PREDICTIONS_OR_REPORT",
        help="evaluation for the card: `guardrail eval run` output or a JSON report (default: DIR/eval_report.json or DIR/eval/)",
    )  # fmt: skip
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="files of DIR not to upload")
    p.add_argument("--message", default=None, help="commit message")


def _push(args: argparse.Namespace) -> int:
    from guardrail.training.push import push_model

    result = push_model(
        args.model, args.repo, private=args.private, revision=args.revision, evaluation=args.eval,
        exclude=args.exclude, commit_message=args.message,
    )  # fmt: skip
    print(f"pushed {len(result.files)} files to {result.repo_id}: {result.commit_url}")
    if result.evaluation:
        print(f"model card evaluation: {result.evaluation}")
    return EXIT_OK


def _split(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", "print_config")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Hub request (push) is noise
    from guardrail.cli import run_handler

    interrupted = "interrupted: rerun the same command to continue from the last checkpoint"
    return run_handler(_dispatch, args, interrupted=interrupted)


def _dispatch(args: argparse.Namespace) -> int:
    from guardrail.training.recipe import (
        STAGES,
        RecipeConfig,
        load_recipe,
        run_pipeline,
        run_stage,
        stage_config,
    )

    if args.command == "push":
        return _push(args)
    if args.command == "card":
        from guardrail.training.card import evaluation_rows, find_evaluation, write_card

        rows = evaluation_rows(args.eval) if args.eval else find_evaluation(args.model)[0]
        print(f"model card written: {write_card(args.model, rows)}")
        return EXIT_OK
    recipe = load_recipe(args.config) if args.config else {}
    flags = _split(args)
    if args.command in ("run", "validate"):
        for key, value in flags.items():
            stage, dot, field = key.partition(".")
            if dot and stage in STAGES:
                section = dict(recipe.get(stage) or {})
                section[field] = value
                recipe[stage] = section
            else:
                recipe[key] = value
        cfg = RecipeConfig.from_dict(recipe)
        if args.print_config:
            _print_yaml(
                {"recipe": cfg.to_dict(), **{s: stage_config(cfg.to_dict(), s).to_dict() for s in cfg.stages}}
            )
            return EXIT_OK
        if args.command == "validate":
            return _validate(cfg)
        result = run_pipeline(cfg)
        for stage, res in result.stages.items():
            print(f"{stage}: {_describe(res)}" + (" (already done)" if stage in result.skipped else ""))
        if result.final_model:
            print(f"final guard model: {result.final_model}")
        if result.pushed:
            print(f"pushed to {cfg.push_to_hub}: {result.pushed}")
        return EXIT_OK
    stage = COMMANDS[args.command][0]
    config = stage_config(recipe, stage, flags)
    if args.print_config:
        _print_yaml(config.to_dict())
        return EXIT_OK
    print(f"{stage}: {_describe(run_stage(stage, config))}")
    return EXIT_OK


def _validate(cfg: Any) -> int:
    """Print each stage's data summary; 0 clean, 1 rows would be dropped, 2 unusable."""
    from guardrail.errors import DataError
    from guardrail.training.recipe import stage_config
    from guardrail.training.validate import check_summaries, validate_stages

    raw = cfg.to_dict()
    configs = {s: stage_config(raw, s) for s in cfg.stages}
    summaries = validate_stages(raw, cfg.stages)
    if not summaries:
        print("no user data to check: every stage reads an earlier stage's output")
    for summary in summaries:
        print("\n".join(summary.lines(show_issues=20)))
    try:
        check_summaries(summaries, {s: getattr(configs[s], "on_bad_row", "skip") for s in cfg.stages})
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if any(s.issues for s in summaries):
        print("some rows would be dropped (on_bad_row: skip); fix them or set on_bad_row: fail to stop")
        return EXIT_WARNINGS
    print("data OK")
    return EXIT_OK


def _describe(result: Any) -> str:
    if result is None:
        return "done"
    if isinstance(result, dict):
        return ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, (dict, list)))
    name = type(result).__name__
    if name == "TrainResult":
        loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "-"
        health = ""
        if result.parse_rate is not None:
            health += f", parse rate {result.parse_rate:.0%}"
        if result.format_reward is not None:
            health += f", format reward {result.format_reward:.2f}"
        return f"model saved to {result.output_dir} ({result.global_step} steps, loss {loss}{health}, {result.samples} samples, {result.skipped_rows} bad rows skipped, {result.seconds:.1f}s)"
    if name == "SampleResult":
        s = result.stats
        rate = "-" if s.parse_rate is None else f"{s.parse_rate:.0%}"
        return (
            f"kept {s.kept} of {s.samples} samples in {result.hard_file} (parse rate {rate}: "
            f"{s.parse_failures} of {s.generations - s.errors} answers unparsable; error rates "
            f"{s.error_rate}, {s.seconds:.1f}s)"
        )
    if name == "AugmentResult":
        return (
            f"{result.originals} originals + {result.augmented} concatenated samples in {result.output_file}"
        )
    return str(result)


def _print_yaml(data: Any) -> None:
    import yaml

    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
