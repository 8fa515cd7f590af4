"""The main job: a guard, trained here or given, moderating an app's traffic every way it plugs in.

    scripts/demo.sh [options]          # sets up .venv first, then runs this file
    python examples/demo.py [options]

1. **The guard.** With ``GUARDRAIL_MODEL`` unset, a small demo guard is built offline with the
   project's own recipe: a tiny Qwen2.5-VL base from :mod:`guardrail.testing`, trained with the
   tiny CPU recipe ``training/tiny.yaml`` (R-SFT, rejection sampling, augmentation, a few GRPO
   steps) on the demo set in ``examples/demo_data/`` (written for this project: short prompts,
   prompt+response pairs, a few pictures; mild content). With ``--policy`` it trains the
   recipe's policy variant ``training/tiny-policy.yaml`` instead (the demo policy
   ``training/policies/demo.yaml`` in the prompt, the rows' categories in the answers): the
   policy travels with the guard, so its verdicts name categories (``Verdict.categories``) and
   the held-out evaluation scores them per category. Its F1 on the held-out part is measured
   with :mod:`guardrail.eval`, and it is exported to GGUF for llama.cpp. Everything is cached
   under ``$GUARDRAIL_CACHE_DIR/demo/<key>`` (default ``~/.cache/guardrail/demo``), the key
   hashing the recipe, the data and the library, so later runs skip straight to part 2.
   With ``GUARDRAIL_MODEL`` set (a local directory or a hub id such as
   ``yueliu1999/GuardReasoner-VL-Eco-3B``) that model is used everywhere instead; it is exported to
   GGUF for the llama.cpp channel only with ``--export-gguf`` and a local directory.
2. **The traffic.** The samples in ``examples/samples.jsonl`` (text, image, text+image,
   prompt+response) go through four channels: an app handler guarded by ``@guard.check``, a
   LangChain chain (``guard.wrap`` around a chat model), the llama.cpp backend on the GGUF file,
   and the moderation server (``create_app`` on 127.0.0.1) called with the OpenAI client.
3. **The table.** One row per channel and sample: the verdict, the guard's latency, how many
   checks ran, what decided (``model``, or ``policy`` when the output could not be read) and
   which path (``reasoning``, or ``fast`` for label probabilities; ``-`` where the API, such as
   OpenAI's moderation result, does not report it), and the categories the verdict names (on
   ``/v1/moderations`` also the OpenAI keys they map to).

Options: ``--quick`` (a much shorter training run, for tests and CI), ``--policy`` (train on the
demo policy: verdicts name categories), ``--cache-dir DIR``,
``--retrain`` (ignore the cache), ``--mode reasoning|fast|cascade`` (how the traffic is decided;
the table's ``path`` column says which path decided each check), ``--json FILE`` (everything
shown, machine-readable); with ``GUARDRAIL_MODEL``: ``--export-gguf`` (or
``GUARDRAIL_DEMO_GGUF=1``), ``--max-new-tokens N``, ``--eval`` (score it on the held-out demo
set). Exit status: 0 when every channel ran, 1 when one failed, 2 when the guard cannot be loaded.

One file per step, beside this one: ``demo_train.py`` (the tiny guard, trained and cached),
``demo_guard.py`` (loading a guard, ``GUARDRAIL_MODEL``, held-out F1, GGUF export),
``demo_traffic.py`` (the sample requests and the table rows), ``demo_channels.py`` (the four
channels), ``demo_report.py`` (the table); ``demo_common.py`` holds the paths and the console.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # the steps: demo_*.py beside this file

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from demo_channels import CHANNELS, run_channels  # noqa: E402
from demo_common import REPO, SAMPLES, Console, env_flag, quiet_third_party, write_json  # noqa: E402
from demo_guard import DemoGuard, given_guard, load_gguf_guard, load_guard  # noqa: E402
from demo_report import gguf_parity, print_report  # noqa: E402
from demo_traffic import load_traffic  # noqa: E402
from demo_train import build_demo_guard, cache_key, demo_recipe  # noqa: E402

import guardrail  # noqa: E402
from guardrail.errors import GuardrailError  # noqa: E402

__all__ = ["CHANNELS", "Console", "DemoGuard", "cache_key", "demo_recipe", "given_guard", "main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/demo.py",
        description="The main job: train (or load) a guard, then moderate sample traffic.",
    )
    parser.add_argument("--quick", action="store_true", help="a much shorter training run (tests, CI)")
    parser.add_argument("--cache-dir", type=Path, help="where the demo guard is cached "
                        "(default: $GUARDRAIL_CACHE_DIR/demo, else ~/.cache/guardrail/demo)")  # fmt: skip
    parser.add_argument("--retrain", action="store_true", help="ignore the cached demo guard")
    parser.add_argument("--policy", action="store_true",
                        help="train the demo guard on the demo policy (training/tiny-policy.yaml): "
                        "verdicts name categories, the held-out report scores them")  # fmt: skip
    parser.add_argument("--export-gguf", action="store_true",
                        help="with GUARDRAIL_MODEL a local directory: export it to GGUF for llama.cpp")  # fmt: skip
    parser.add_argument("--max-new-tokens", type=int,
                        help="with GUARDRAIL_MODEL: the guard's generation budget (default: the profile's)")  # fmt: skip
    parser.add_argument("--eval", action="store_true",
                        help="with GUARDRAIL_MODEL: score it on the held-out demo set too")  # fmt: skip
    parser.add_argument(
        "--mode", choices=("reasoning", "fast", "cascade"), default="reasoning",
        help="how the guard decides the traffic: reasoning (default), fast (label probabilities, no "
        "reasoning) or cascade (fast, reasoning when unsure); the held-out F1 is for reasoning",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write everything shown to this JSON file")
    return parser.parse_args(argv)


def default_cache() -> Path:
    """``$GUARDRAIL_CACHE_DIR/demo`` (the library's cache, as for llama.cpp's converter; else
    ``$XDG_CACHE_HOME/guardrail`` or ``~/.cache/guardrail``); ``$GUARDRAIL_CACHE`` of the other
    examples is honoured too."""
    from guardrail.export.gguf import default_cache_dir

    legacy = os.environ.get("GUARDRAIL_CACHE")
    return (
        Path(legacy) if legacy and not os.environ.get("GUARDRAIL_CACHE_DIR") else default_cache_dir()
    ) / "demo"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    quiet_third_party()
    cache_root = (args.cache_dir or default_cache()).expanduser().resolve()
    model = os.environ.get("GUARDRAIL_MODEL")
    console.say(f"guardrail {guardrail.__version__} - the main job")
    console.say("=" * 100)

    console.say("Part 1: the guard")
    try:
        if model:
            demo = given_guard(
                console, model, cache_root, export=args.export_gguf or env_flag("GUARDRAIL_DEMO_GGUF"),
                max_new_tokens=args.max_new_tokens, evaluate=args.eval,
            )  # fmt: skip
        else:
            demo = build_demo_guard(
                console, cache_root, quick=args.quick, retrain=args.retrain, policy=args.policy
            )
        demo.mode = args.mode
        with console.timed(f"loading the guard ({demo.model}, {args.mode} mode)"):
            guard = load_guard(demo, args.mode)
        trained = guard.profile.trained_policy  # guardrail_policy.yaml beside the weights
        if trained is not None:
            flagged = [c.code for c in trained.categories if c.action == "flag"]
            console.step(f"the guard was trained on policy {trained.name or '(unnamed)'}: it names "
                         f"{', '.join(trained.codes)}" + (f" ({', '.join(flagged)}: flag, not block)" if flagged else ""))  # fmt: skip
    except (GuardrailError, OSError) as exc:
        what = repr(model) if model else "(the demo guard)"
        console.say(f"cannot load the guard {what}: {type(exc).__name__}: {exc}")
        if model and not Path(model).expanduser().exists():
            console.say("(a hub id needs internet access, or the model already in the Hugging Face cache; "
                        "HF_HUB_OFFLINE=1 forbids downloads)")  # fmt: skip
        return 2
    gguf_guard, gguf_note = None, demo.gguf_note
    if demo.gguf is not None:
        with console.timed("loading the GGUF guard with llama.cpp"):
            gguf_guard, gguf_note = load_gguf_guard(demo)

    traffic = load_traffic()
    console.say("")
    console.say(
        f"Part 2: moderating {len(traffic)} sample requests ({SAMPLES.relative_to(REPO)}) through each channel"
    )
    try:
        rows, problems = run_channels(console, guard, gguf_guard, gguf_note, traffic)
    finally:
        guard.close()
        if gguf_guard is not None:
            gguf_guard.close()

    console.say("")
    console.say("Part 3: verdicts")
    print_report(console, demo, rows, problems)
    console.say(f"total time {console.elapsed():.1f}s")

    if args.json:
        write_json(args.json, {
            "guardrail_version": guardrail.__version__,
            "guard": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(demo).items()},
            "rows": [dataclasses.asdict(r) for r in rows],
            "problems": problems,
            "gguf_parity": gguf_parity(rows),
            "seconds": round(console.elapsed(), 2),
        })  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
