"""The registry of benchmark names and file formats, and :func:`load_benchmark`.

Benchmarks are loaded by name from :data:`BENCHMARKS` (files under the benchmark data directory,
which the package never ships, see :func:`resolve_data_dir`) or from a path in one of
:data:`FORMATS` (``FORMAT:PATH``, or told from the file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from guardrail.errors import ConfigurationError, DatasetError
from guardrail.eval.benchmark import Benchmark
from guardrail.eval.loaders import (
    _json_records,
    load_figstep,
    load_figstep_attack,
    load_figstep_question,
    load_guardreasoner,
    load_harmbench,
    load_jsonl,
    load_mossbench,
    load_omni,
    load_openai_moderation,
    load_simplesafetytests,
    load_vltest,
    load_xstest_completions,
    load_xstest_prompts,
)

__all__ = [
    "BENCHMARKS",
    "DATA_DIR_ENV",
    "FORMATS",
    "OMNI_BENCHMARKS",
    "BenchmarkSpec",
    "Loader",
    "benchmark_name",
    "load_benchmark",
    "lookup",
    "resolve_data_dir",
]

DATA_DIR_ENV = "GUARDRAIL_DATA_DIR"

Loader = Callable[[Path, str], Benchmark]


@dataclass(frozen=True)
class BenchmarkSpec:
    """A registered benchmark: its file (relative to the benchmark data directory), loader and
    the text of ``python -m guardrail.eval list``."""

    path: str
    loader: Loader
    description: str


def _gr(task: str) -> Loader:
    def load(path: Path, name: str) -> Benchmark:
        return load_guardreasoner(path, name, task)

    return load


_GR_DIR = "guardreasoner/benchmark/"

#: The GuardReasoner papers' benchmark files: (name, file, task, rows).
_GUARDREASONER_FILES = (
    ("ToxicChat", "0_8_toxic_chat.json", "request", 2853),
    ("OpenAIModeration", "0_2_OpenAIModeration.json", "request", 1680),
    ("AegisSafetyTest", "0_1_AegisSafetyTest.json", "request", 359),
    ("SimpleSafetyTests", "0_0_SimpleSafetyTests.json", "request", 100),
    ("HarmBenchPrompt", "0_3_harmbench_prompt.json", "request", 239),
    ("HarmBenchResponse", "0_5_harmbench_response.json", "response", 602),
    ("XSTestResponseHarmful", "0_6_xstest_response_harmful.json", "response", 446),
    ("XSTestResponseRefusal", "0_7_xstest_response_refusal.json", "refusal", 449),
    ("SafeRLHF", "0_9_safe_rlhf.json", "response", 2000),
    ("BeaverTails", "0_A_beaver_tails.json", "response", 3021),
)

_OMNI_DIR = "guardreasoner-omni/"

#: The GuardReasoner-Omni paper's benchmark files (``src/generate.py``, ``src/evaluate.py``;
#: their predictions folders use the same names) -> modality. Registered as ``omni-NAME``
#: (``data/benchmarks/guardreasoner-omni/NAME.json``, read by :func:`load_omni`).
OMNI_BENCHMARKS: dict[str, str] = {
    **dict.fromkeys(("toxic_chat_test", "HarmBench_prompt", "openaimoderation", "Aegis_2_prompt",
                     "SimpleSafetyTest", "sorrybench", "wildguard_prompt", "xstest_prompt", "or-bench",
                     "Aegis_2_response", "HarmBench_response", "saferlhf", "BeaverTails",
                     "wildguard_response"), "text"),
    **dict.fromkeys(("LlavaGuard", "UnsafeBench", "VLGuard", "SPA-VL_prompt", "holisafe", "SPA-VL_response"),
                    "image"),
    **dict.fromkeys(("ucf-crime_test", "XD-Violence_test", "FVC", "safesora", "VA-SafetyBench_video"), "video"),
    **dict.fromkeys(("AdvBench_prompt", "Jailbreak-AudioBench", "Nemotron_prompt", "mutox",
                     "VA-SafetyBench_audio", "AdvBench_response", "Nemotron_response"), "audio"),
}  # fmt: skip

#: Benchmark name -> spec. Names are matched case-insensitively. The CamelCase names are the
#: GuardReasoner papers' files (their predictions folders use the same names); the lower-case
#: ones read the original public releases.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    **{
        name: BenchmarkSpec(_GR_DIR + file, _gr(task), f"{task}, {rows} (GuardReasoner copy)")
        for name, file, task, rows in _GUARDREASONER_FILES
    },
    "xstest": BenchmarkSpec("xstest/xstest_prompts.csv", load_xstest_prompts, "request, 450 XSTest prompts"),
    "xstest-completions": BenchmarkSpec(
        "xstest/xstest_v2_completions_gpt4.csv",
        load_xstest_completions,
        "refusal + request, 450 GPT-4 completions of the XSTest prompts",
    ),  # fmt: skip
    "sst": BenchmarkSpec(
        "simplesafetytests/simplesafetytests.csv", load_simplesafetytests, "request, 100 SimpleSafetyTests"
    ),
    "openai-moderation": BenchmarkSpec(
        "openai_moderation/samples-1680.jsonl.gz",
        load_openai_moderation,
        "request, 859 of 1680 (rows with missing flags and none set are skipped)",
    ),  # fmt: skip
    "harmbench": BenchmarkSpec(
        "harmbench/harmbench_behaviors_text_test.csv",
        load_harmbench,
        "request, 320 HarmBench text behaviours",
    ),
    "figstep": BenchmarkSpec(
        "figstep/SafeBench-Tiny.csv", load_figstep, "request, 50 typographic images, no text"
    ),
    "figstep-question": BenchmarkSpec(
        "figstep/SafeBench-Tiny.csv", load_figstep_question, "request, 50 images + the forbidden question"
    ),
    "figstep-attack": BenchmarkSpec(
        "figstep/SafeBench-Tiny.csv", load_figstep_attack, "request, 50 images + FigStep's incitement text"
    ),
    "mossbench": BenchmarkSpec(
        "mossbench", load_mossbench, "request, image + question: benign (unharmful) vs contrast (harmful)"
    ),
    **{
        f"omni-{name}": BenchmarkSpec(
            f"{_OMNI_DIR}{name}.json", load_omni, f"{modality} (GuardReasoner-Omni copy)"
        )
        for name, modality in OMNI_BENCHMARKS.items()
    },
}

# Other spellings: the GuardReasoner predictions folder keeps the original typo.
_ALIASES = {"xstestreponseharmful": "XSTestResponseHarmful"}

#: Format name -> loader, for benchmarks given as paths (``FORMAT:PATH`` or auto-detected).
FORMATS: dict[str, Loader] = {
    "guardreasoner": load_guardreasoner,
    "vltest": load_vltest,
    "jsonl": load_jsonl,
    "omni": load_omni,
}


def lookup(name: str) -> str | None:
    """The registered name for ``name`` (case-insensitive), or None."""
    key = name.lower()
    key = _ALIASES.get(key, key).lower()
    for registered in BENCHMARKS:
        if registered.lower() == key:
            return registered
    return None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data directory: ``data_dir``, else ``$GUARDRAIL_DATA_DIR``, else ``./data``.

    Either the directory that holds ``benchmarks/`` or ``benchmarks/`` itself.
    """
    root = Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")
    if (root / "benchmarks").is_dir():
        root = root / "benchmarks"
    if not root.is_dir():
        raise ConfigurationError(
            f"benchmark data directory {str(root)!r} not found; pass --data-dir or set {DATA_DIR_ENV} "
            "(guardrail ships no benchmark data)"
        )
    return root


def _detect_format(path: Path) -> str:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if path.suffix == ".json":
        for _, rec in _json_records(path):
            if isinstance(rec, Mapping) and "messages" in rec:
                return "vltest"
            if isinstance(rec, Mapping) and "task_type" in rec:
                return "omni"
            return "guardreasoner"
        raise DatasetError("empty benchmark file", path=str(path))
    raise DatasetError(
        f"cannot tell the format of {path.name}; prefix it with one of {', '.join(FORMATS)} "
        "(e.g. jsonl:my_data.txt)", path=str(path)
    )  # fmt: skip


def benchmark_name(path: Path) -> str:
    """A benchmark name for a file: its name without the extension(s)."""
    name = path.name
    for ext in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(ext)
    return name or "benchmark"


_NAMED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)=(.+)$")


def load_benchmark(name_or_path: str, data_dir: str | os.PathLike[str] | None = None) -> Benchmark:
    """Load a registered benchmark by name, or a file as ``[NAME=][FORMAT:]PATH``.

    A file's benchmark is named after the file (``data/test.jsonl`` -> ``test``) unless
    ``NAME=`` names it (two files with the same name evaluated together need it).
    Raises :class:`~guardrail.errors.ConfigurationError` for an unknown name or a missing data
    directory, :class:`~guardrail.errors.DatasetError` for a bad file.
    """
    named = _NAMED.match(name_or_path)
    if named and not Path(name_or_path).exists():
        bench = load_benchmark(named.group(2), data_dir)
        return Benchmark(named.group(1), bench.samples, bench.source, bench.description, bench.skipped)
    registered = lookup(name_or_path)
    if registered is not None:
        spec = BENCHMARKS[registered]
        path = resolve_data_dir(data_dir) / spec.path
        if not path.exists():
            raise ConfigurationError(f"data for benchmark {registered!r} not found at {path}")
        bench = spec.loader(path, registered)
        return Benchmark(bench.name, bench.samples, bench.source, spec.description, bench.skipped)
    fmt, sep, rest = name_or_path.partition(":")
    if sep and fmt in FORMATS and len(fmt) > 1:
        path = Path(rest)
    else:
        fmt, path = "", Path(name_or_path)
    if not path.exists():
        raise ConfigurationError(
            f"unknown benchmark {name_or_path!r}: not a registered name ({', '.join(BENCHMARKS)}) "
            "nor an existing file"
        )
    fmt = fmt or _detect_format(path)
    return FORMATS[fmt](path, benchmark_name(path))
