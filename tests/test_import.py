"""`import guardrail` stays light: no heavy library is imported with it."""

from __future__ import annotations

import subprocess

from tests.conftest import PYTHON, REPO, subprocess_env

HEAVY = (
    "torch",
    "transformers",
    "llama_cpp",
    "langchain_core",
    "fastapi",
    "numpy",
    "httpx",
    "uvicorn",
    "agents",
    "litellm",
)


def test_import_guardrail_is_light():
    code = (
        "import sys, guardrail, guardrail.testing, guardrail.profiles, guardrail.backends, guardrail.cli\n"
        "import guardrail.integrations.decorator, guardrail.integrations.extract\n"
        "from guardrail import Guard, Verdict, GuardViolation\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"heavy modules imported: {proc.stdout}"


def test_missing_extra_names_the_pip_extra():
    from guardrail._deps import require
    from guardrail.errors import MissingDependencyError

    try:
        require("guardrail_no_such_module", extra="llamacpp")
    except MissingDependencyError as exc:
        assert 'pip install "guardrail-vl[llamacpp]"' in str(exc)
        assert isinstance(exc, ImportError)
    else:  # pragma: no cover
        raise AssertionError("expected MissingDependencyError")
