"""Export a guard model to GGUF for llama.cpp: language model + mmproj, quantised.

``python -m guardrail export gguf --model DIR --out DIR [--quant q8_0]`` or :func:`export_gguf`.

1. llama.cpp's own converter (``convert_hf_to_gguf.py`` with its ``gguf-py``) writes the language
   model GGUF and, for vision-language guards, the vision projector (``--mmproj``). It runs in a
   separate Python process (:mod:`guardrail.export._convert`) and needs torch and transformers
   (the ``transformers`` extra).
2. llama-cpp-python's quantisation binding (``llama_model_quantize``) turns the 16/32-bit language
   model into ``q8_0``, ``q4_k_m``... The mmproj stays 16-bit (32-bit for ``f32``): llama.cpp
   reads it at that precision and it is a small share of the size.

The converter comes from a llama.cpp source tree, obtained reproducibly, and nothing of llama.cpp
is copied into this repository:

- a checkout the caller names (``llama_cpp_dir``, ``--llama-cpp DIR`` or the
  ``GUARDRAIL_LLAMA_CPP_DIR`` environment variable), or
- by default, the source distribution of the *installed* llama-cpp-python version, fetched from
  the package index with ``pip download llama-cpp-python==<version> --no-binary :all:`` once and
  cached (``~/.cache/guardrail/llama.cpp-<version>``; ``GUARDRAIL_CACHE_DIR`` moves it). Its
  ``vendor/llama.cpp`` is the exact llama.cpp that the installed backend runs, so the converter
  and the runtime always agree on the format.

Model code: llama.cpp's converter loads tokenizers with ``trust_remote_code=True``, so a model
directory that ships its own Python code (an ``auto_map`` in its configuration files, ``*.py``
files) would have that code run during the export. guardrail keeps remote code off: such a
directory is refused with a :class:`~guardrail.errors.ConfigurationError` before the converter
starts, and the converter process itself is run with transformers' dynamic-module loading
disabled. ``trust_remote_code=True`` (``--trust-remote-code``) allows both, for a directory
whose code you have read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail.errors import ConfigurationError, ExportError, MissingDependencyError, UnsupportedError
from guardrail.export.notes import PARITY, detect_pre_tokenizer, fallback_note, model_name
from guardrail.gguf_metadata import read_gguf_metadata  # re-exported: its home is guardrail.gguf_metadata
from guardrail.policies.trained import POLICY_FILE, read_trained_policy

__all__ = [
    "QUANT_TYPES",
    "GGUFFiles",
    "converter_source",
    "custom_code",
    "default_cache_dir",
    "detect_pre_tokenizer",
    "export_gguf",
    "fallback_note",
    "model_name",
    "parity_note",
    "find_gguf_files",
    "quantize_gguf",
    "read_gguf_metadata",
]

log = logging.getLogger("guardrail.export")


@dataclass(frozen=True)
class QuantType:
    """One output type: the llama.cpp file type and what it costs."""

    name: str
    ftype: int  # llama_ftype
    bits_per_weight: float  # approximate, for the docs and the size estimate
    note: str


# llama_ftype values from llama.h (stable across versions): f32 0, f16 1, q8_0 7, q4_k_m 15,
# q5_k_m 17, q6_k 18, bf16 32.
QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("f32", 0, 32.0, "exact; for tests and parity checks"),
        QuantType("f16", 1, 16.0, "practically lossless; 2 bytes per weight"),
        QuantType("bf16", 32, 16.0, "the training precision of most guards"),
        QuantType("q8_0", 7, 8.5, "near-lossless; the default"),
        QuantType("q6_k", 18, 6.6, "very close to q8_0, 20% smaller"),
        QuantType("q5_k_m", 17, 5.7, "small quality loss"),
        QuantType("q4_k_m", 15, 4.9, "smallest and fastest; measurable quality loss"),
    )
}
_CONVERTER_TYPES = ("f32", "f16", "bf16")  # written by the converter itself; others are quantised

LLAMA_CPP_ENV = "GUARDRAIL_LLAMA_CPP_DIR"
CACHE_ENV = "GUARDRAIL_CACHE_DIR"
_COMPLETE = ".guardrail-complete"
# What the converter needs from a llama.cpp tree (paths relative to its root).
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


@dataclass(frozen=True)
class GGUFFiles:
    """The files of one exported guard: pass them to :meth:`guardrail.Guard.from_gguf`."""

    model: Path
    mmproj: Path | None
    quant: str


# ---------------------------------------------------------------------------------- export
def export_gguf(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    quant: str = "q8_0",
    name: str | None = None,
    mmproj: bool | None = None,
    llama_cpp_dir: str | os.PathLike[str] | None = None,
    assume_pre_tokenizer: str | None = None,
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    trust_remote_code: bool = False,
) -> GGUFFiles:
    """Convert the Hugging Face model in ``model_dir`` to GGUF files in ``out_dir``.

    - ``quant``: one of :data:`QUANT_TYPES` (``f32``, ``f16``, ``bf16``, ``q8_0``, ``q6_k``,
      ``q5_k_m``, ``q4_k_m``); applies to the language model.
    - ``name``: file name stem (default: :func:`model_name`, the model's name - the directory's,
      or for a recipe stage's ``runs/NAME/rl`` the run's). Files are ``{name}-{quant}.gguf`` and
      ``mmproj-{name}-{f16|f32}.gguf``; existing files are replaced.
    - ``mmproj``: write the vision projector (default: when the model has a vision tower).
    - ``llama_cpp_dir``: a llama.cpp checkout (or a llama-cpp-python source tree) to take the
      converter from; default: see the module docstring.
    - ``assume_pre_tokenizer``: llama.cpp pre-tokenizer name to use if the converter does not
      recognise the tokenizer. Default: detected from the split regex of the guard's own
      ``tokenizer.json`` (:func:`detect_pre_tokenizer`; a guard trained from the tiny base is
      ``qwen2``). Real GuardReasoner(-VL) tokenizers are recognised by the converter itself.
    - ``threads``: quantisation threads (default: all cores).
    - ``trust_remote_code``: allow a model directory that ships its own Python code (an
      ``auto_map`` in ``config.json``, ``tokenizer_config.json``... or ``*.py`` files); the
      converter runs that code. Off: such a directory raises ``ConfigurationError``.

    Raises :class:`~guardrail.errors.ConfigurationError` for bad paths or options,
    :class:`~guardrail.errors.MissingDependencyError` without llama-cpp-python, and
    :class:`~guardrail.errors.ExportError` when the converter or the quantiser fails.
    """
    say = progress or log.info
    model_dir = Path(model_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    config = _read_model_config(model_dir)
    if not trust_remote_code:
        refuse_custom_code(model_dir)
    if config.get("model_type") == "mllama":
        raise UnsupportedError(
            "llama.cpp has no Mllama architecture: Llama Guard 3 11B Vision cannot be exported to GGUF. "
            "Run it with the transformers backend or a vLLM endpoint, or use Llama Guard 4 (GGUF with mmproj)"
        )
    # ShieldGemma 2 converts through its Gemma 3 layout (guardrail.export.gemma3)
    shieldgemma2 = config.get("model_type") == "shieldgemma2"
    if quant not in QUANT_TYPES:
        raise ConfigurationError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"--out {out_dir} exists and is not a directory")
    has_vision = config.get("vision_config") is not None
    if mmproj is None:
        mmproj = has_vision
    elif mmproj and not has_vision:
        raise ConfigurationError(f"{model_dir} has no vision tower: there is no mmproj to export")
    name = name or model_name(model_dir)
    if not name or any(c in name for c in "/\\\0"):
        raise ConfigurationError(f"bad file name stem {name!r}")
    source = converter_source(llama_cpp_dir, cache_dir=cache_dir, progress=say)
    if quant not in _CONVERTER_TYPES:
        require("llama_cpp", extra="llamacpp", package="llama-cpp-python", feature="GGUF quantisation")
    out_dir.mkdir(parents=True, exist_ok=True)

    runner = ["--llama-cpp", str(source)]
    if trust_remote_code:
        runner.append("--trust-remote-code")
    if assume_pre_tokenizer is None:
        assume_pre_tokenizer = detect_pre_tokenizer(model_dir)
        if assume_pre_tokenizer:
            say(
                f"tokenizer split regex: {assume_pre_tokenizer} (used only if the converter does not "
                "recognise the tokenizer; --assume-pre-tokenizer overrides)"
            )
    if assume_pre_tokenizer:
        runner += ["--assume-pre-tokenizer", assume_pre_tokenizer]
    policy_file = model_dir / POLICY_FILE
    if policy_file.is_file():  # a guard trained on a policy: the GGUF carries it (guardrail.policy)
        read_trained_policy(model_dir)  # a malformed file fails here, not in the converter
        runner += ["--policy-file", str(policy_file)]
        say(f"the guard was trained on a policy: writing {POLICY_FILE} into the GGUF metadata")
    model_out = out_dir / f"{name}-{quant}.gguf"
    base = quant if quant in _CONVERTER_TYPES else _source_precision(config)
    mmproj_kind = "f32" if quant == "f32" else "f16"
    mmproj_out = out_dir / f"mmproj-{name}-{mmproj_kind}.gguf" if mmproj else None
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        source_dir = model_dir
        if shieldgemma2:
            from guardrail.export.gemma3 import gguf_model_name, repack_shieldgemma2

            say("re-packing ShieldGemma 2 as Gemma 3 (Gemma3ForConditionalGeneration) for the converter")
            source_dir = repack_shieldgemma2(model_dir, Path(tmp) / "gemma3")
            runner.append("--spm-from-tokenizer-json")
        converted = Path(tmp) / f"{name}-{base}.gguf"
        runs = [[str(source_dir), "--outfile", str(converted), "--outtype", base]]
        if shieldgemma2:  # the family is told by the GGUF's name: its architecture is a plain gemma3
            runs[0] += ["--model-name", gguf_model_name(name)]
        what = f"the language model ({base})"
        if mmproj_out is not None:
            runs.append(
                [
                    str(source_dir),
                    "--outfile",
                    str(Path(tmp) / mmproj_out.name),
                    "--outtype",
                    mmproj_kind,
                    "--mmproj",
                ]
            )
            what += f" and the vision projector (mmproj, {mmproj_kind})"
            pixels = _vision_pixel_bounds(model_dir)
            if pixels:
                runner += ["--vision-pixels", str(pixels[0]), str(pixels[1])]
        say(f"converting {what} with {source / 'convert_hf_to_gguf.py'}")
        _run_converter(runner, runs, model_dir)
        if quant != base:
            say(f"quantising the language model to {quant}")
            converted = quantize_gguf(converted, Path(tmp) / model_out.name, quant, threads=threads)
            note = fallback_note(converted, quant)
            if note:
                say(note)
        os.replace(converted, model_out)
        if mmproj_out is not None:
            os.replace(Path(tmp) / mmproj_out.name, mmproj_out)
    return GGUFFiles(model=model_out, mmproj=mmproj_out, quant=quant)


def parity_note(quant: str) -> str:
    """The measured caveat printed after an export (see :data:`PARITY`)."""
    measured = ", ".join(f"{q} {v}" for q, v in PARITY.items())
    return (
        f"{quant}: {QUANT_TYPES[quant].note}. Measured on the demo's tiny guard's held-out set, labels "
        f"agreeing with the original model: {measured}. Compare your export with the original on "
        "your own held-out data before serving it."
    )


def quantize_gguf(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], quant: str, *, threads: int | None = None
) -> Path:
    """Quantise a language-model GGUF with llama-cpp-python's ``llama_model_quantize``.

    k-quants (``q4_k_m``...) need rows that are multiples of 256 values; llama.cpp keeps smaller
    tensors (tiny test models) at a compatible type, so the result always loads.
    """
    if quant not in QUANT_TYPES:
        raise ConfigurationError(f"unknown quantisation {quant!r}; choose one of {', '.join(QUANT_TYPES)}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConfigurationError(f"no GGUF file at {src}")
    llama_cpp = require(
        "llama_cpp", extra="llamacpp", package="llama-cpp-python", feature="GGUF quantisation"
    )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant].ftype
    params.nthread = int(threads or 0)
    start = time.perf_counter()
    llama_log = logging.getLogger("llama-cpp-python")  # llama.cpp's log goes through this logger
    level = llama_log.level
    if not log.isEnabledFor(logging.DEBUG):
        llama_log.setLevel(logging.ERROR)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    finally:
        llama_log.setLevel(level)
    if rc != 0 or not dst.is_file():
        raise ExportError(f"llama_model_quantize failed for {src} -> {quant} (return code {rc})")
    log.info("quantised %s to %s in %.1f s", src.name, quant, time.perf_counter() - start)
    return dst


def _read_model_config(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise ConfigurationError(
            f"--model {model_dir} is not a directory (give a Hugging Face model directory)"
        )
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ConfigurationError(f"{model_dir} has no config.json: not a Hugging Face model directory")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise ConfigurationError(f"{model_dir} has no weights (*.safetensors)")
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {config_path}: {exc}") from exc


# Files in which transformers reads an ``auto_map`` (a pointer to Python code in the directory).
_CODE_MAP_FILES = ("*config*.json",)


def custom_code(model_dir: str | os.PathLike[str]) -> list[str]:
    """What in ``model_dir`` would make transformers run code from it: each configuration file
    with an ``auto_map`` (``config.json``, ``tokenizer_config.json``,
    ``preprocessor_config.json``, ``processor_config.json``...) and each ``*.py`` file.
    A configuration file that cannot be read counts too (it cannot be checked)."""
    model_dir = Path(model_dir)
    found: list[str] = []
    names = sorted({p for pattern in _CODE_MAP_FILES for p in model_dir.glob(pattern) if p.is_file()})
    for path in names:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found.append(f"{path.name} (unreadable)")
            continue
        if _has_key(data, "auto_map"):
            found.append(f"{path.name}: auto_map")
    found += sorted(p.name for p in model_dir.glob("*.py"))
    return found


def refuse_custom_code(model_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`~guardrail.errors.ConfigurationError` if ``model_dir`` ships code
    (see :func:`custom_code`)."""
    found = custom_code(model_dir)
    if found:
        raise ConfigurationError(
            f"{model_dir} ships its own Python code ({', '.join(found)}), which llama.cpp's converter "
            "would run: refused. Read that code first; to run it anyway pass --trust-remote-code "
            "(export_gguf(..., trust_remote_code=True))"
        )


def _has_key(data: Any, key: str, depth: int = 0) -> bool:
    if depth > 32:  # no real configuration nests this deep: treat as suspicious
        return True
    if isinstance(data, dict):
        return key in data or any(_has_key(v, key, depth + 1) for v in data.values())
    if isinstance(data, list):
        return any(_has_key(v, key, depth + 1) for v in data)
    return False


def _source_precision(config: Mapping[str, Any]) -> str:
    """The converter output type that keeps the checkpoint's precision before quantising."""
    text = config.get("text_config") or {}
    dtype = str(config.get("torch_dtype") or config.get("dtype") or text.get("dtype") or "bfloat16")
    return {"float32": "f32", "float16": "f16"}.get(dtype.replace("torch.", ""), "bf16")


def _vision_pixel_bounds(model_dir: Path) -> tuple[int, int] | None:
    """``(min_pixels, max_pixels)`` of the model's image processor, when it states them."""
    cfg: dict[str, Any] = {}
    for fname, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = model_dir / fname
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            cfg.update(data.get(key, {}) if key else data)
    size = cfg.get("size") if isinstance(cfg.get("size"), dict) else {}
    lo = cfg.get("min_pixels") or size.get("shortest_edge")
    hi = cfg.get("max_pixels") or size.get("longest_edge")
    if isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi:
        return lo, hi
    return None


def _run_converter(runner: list[str], runs: list[list[str]], model_dir: Path) -> None:
    cmd = [sys.executable, "-m", "guardrail.export._convert", *runner]
    for run in runs:
        cmd += ["--", *run]
    env = dict(os.environ)
    # the runner is part of this package: make it importable from a source checkout too
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local directory needs nothing from the hub
    # stdin closed: nothing in the converter may wait for an answer (transformers asks on a
    # terminal whether to run a model's code)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, stdin=subprocess.DEVNULL)
    outputs = [Path(run[run.index("--outfile") + 1]) for run in runs]
    if proc.returncode != 0 or not all(p.is_file() for p in outputs):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        hint = ""
        if "pre-tokenizer was not recognized" in tail:
            hint = "\n(llama.cpp does not know this tokenizer; if you know its family, pass --assume-pre-tokenizer NAME)"
        elif "guardrail refused to run code" in tail:
            hint = "\n(the model directory asks to run its own code; pass --trust-remote-code to allow it)"
        elif "No module named 'torch'" in tail or "No module named 'transformers'" in tail:
            hint = '\n(the converter needs torch and transformers: pip install "guardrail-vl[transformers]")'
        raise ExportError(
            f"convert_hf_to_gguf.py failed for {model_dir} (exit code {proc.returncode}):\n{tail}{hint}"
        )


# --------------------------------------------------------------------- converter source
def default_cache_dir() -> Path:
    """``$GUARDRAIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/guardrail``, else ``~/.cache/guardrail``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "guardrail"


def converter_source(
    llama_cpp_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The llama.cpp tree whose ``convert_hf_to_gguf.py`` to run (see the module docstring)."""
    given = llama_cpp_dir or os.environ.get(LLAMA_CPP_ENV)
    if given:
        root = Path(given).expanduser()
        for candidate in (root, root / "vendor" / "llama.cpp"):
            if (candidate / "convert_hf_to_gguf.py").is_file() and (candidate / "gguf-py").is_dir():
                return candidate.resolve()
        raise ConfigurationError(
            f"{root} is not a llama.cpp checkout: convert_hf_to_gguf.py and gguf-py/ not found"
        )
    version = _installed_llama_cpp_python()
    target = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = target / f"llama.cpp-{version}"
    if (target / _COMPLETE).is_file():
        return target
    (progress or log.info)(
        f"fetching llama.cpp's converter: the llama-cpp-python {version} source distribution (once)"
    )
    _fetch_sdist_converter(version, target)
    return target


def _installed_llama_cpp_python() -> str:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise MissingDependencyError("llama-cpp-python", "llamacpp", "GGUF export") from None


def _fetch_sdist_converter(version: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}",
            "--no-binary", ":all:", "--no-deps", "--disable-pip-version-check", "-d", tmp,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise ExportError(
                f"could not fetch the llama-cpp-python {version} source distribution with pip:\n{tail}\n"
                "Give a llama.cpp checkout instead: --llama-cpp DIR (or GUARDRAIL_LLAMA_CPP_DIR)."
            )
        staging = Path(tmp) / "llama.cpp"
        digest = _extract_converter(sdists[0], staging)
        (staging / _COMPLETE).write_text(
            json.dumps({"llama-cpp-python": version, "sdist": sdists[0].name, "sha256": digest}) + "\n"
        )
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # a stale partial copy: replace it
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)


def _extract_converter(sdist: Path, dest: Path) -> str:
    """Extract ``vendor/llama.cpp/{convert_hf_to_gguf.py,conversion,gguf-py,LICENSE}``; return the
    sdist's sha256. Only regular files are written, at paths built here (no links, no ``..``)."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    found = False
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if len(parts) < 4 or parts[1:3] != ("vendor", "llama.cpp") or not member.isfile():
                continue
            rel = Path(*parts[3:])
            if ".." in rel.parts or rel.is_absolute():
                continue
            if not any(rel.as_posix() == p or rel.as_posix().startswith(p) for p in _CONVERTER_PARTS):
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            if src is None:
                continue
            with src, open(out, "wb") as fh:
                shutil.copyfileobj(src, fh)
            found = found or rel.as_posix() == "convert_hf_to_gguf.py"
    if not found:
        raise ExportError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
    return digest


# ------------------------------------------------------------------------------ reading
def find_gguf_files(path: str | os.PathLike[str], mmproj: str | os.PathLike[str] | None = None) -> GGUFFiles:
    """Resolve a model path (a ``.gguf`` file or a directory holding one) and its mmproj.

    In a directory, the model is the only ``*.gguf`` whose name does not start with ``mmproj``,
    and the mmproj (unless given) the only ``mmproj*.gguf``; anything ambiguous is an error.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        models = sorted(p for p in path.glob("*.gguf") if not p.name.startswith("mmproj"))
        if len(models) != 1:
            found = ", ".join(p.name for p in models) or "none"
            raise ConfigurationError(
                f"{path} must hold exactly one model .gguf file (found: {found}); give the file"
            )
        if mmproj is None:
            projs = sorted(path.glob("mmproj*.gguf"))
            if len(projs) > 1:
                raise ConfigurationError(
                    f"{path} holds several mmproj files ({', '.join(p.name for p in projs)}); give mmproj="
                )
            mmproj = projs[0] if projs else None
        path = models[0]
    elif not path.is_file():
        raise ConfigurationError(f"no GGUF model at {path}: no such file or directory")
    if mmproj is not None:
        mmproj = Path(mmproj).expanduser()
        if not mmproj.is_file():
            raise ConfigurationError(f"no mmproj file at {mmproj}")
    quant = path.stem.rsplit("-", 1)[-1].lower()
    return GGUFFiles(model=path, mmproj=mmproj, quant=quant if quant in QUANT_TYPES else "unknown")
