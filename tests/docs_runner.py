"""Run the code blocks of one markdown page, in order, in one namespace (used by test_docs.py).

    python tests/docs_runner.py PAGE.md WORKDIR

Python blocks share a namespace (a page reads like one session); top-level ``await`` works, on
one event loop for the whole page. Bash blocks run with ``bash -euo pipefail`` in WORKDIR.
A directive in an HTML comment right before a block changes how it runs:

- ``<!-- doctest: skip: REASON -->``: not run (a GPU, a server that runs forever...); the reason
  is required and reported;
- ``<!-- doctest: exit 0 1 -->``: the exit codes a bash block may end with (default 0);
- ``<!-- doctest: timeout 300 -->``: seconds for a block (default 240).

Exit status 0 when every block ran; otherwise the failing block is printed with its line.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

# A fence may be indented (a block inside a list item); its code is dedented.
FENCE = re.compile(
    r"(?:<!--\s*doctest:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.S | re.M,
)
RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}


@dataclass
class Block:
    lang: str
    code: str
    line: int
    skip: str | None
    exit_codes: tuple[int, ...]
    timeout: float


def blocks(text: str) -> list[Block]:
    out = []
    for m in FENCE.finditer(text):
        lang = RUNNABLE.get(m.group("lang").lower())
        if lang is None:
            continue
        directive = (m.group("directive") or "").strip()
        skip = None
        exit_codes: tuple[int, ...] = (0,)
        timeout = 240.0
        if directive.startswith("skip"):
            skip = directive.partition(":")[2].strip()
            if not skip:
                raise ValueError(
                    f"line {text[: m.start()].count(chr(10)) + 1}: a skipped block needs a reason"
                )
        elif directive.startswith("exit"):
            exit_codes = tuple(int(x) for x in directive.split()[1:])
        elif directive.startswith("timeout"):
            timeout = float(directive.split()[1])
        elif directive:
            raise ValueError(f"unknown doctest directive {directive!r}")
        line = text[: m.start("code")].count("\n") + 1
        out.append(Block(lang, textwrap.dedent(m.group("code")), line, skip, exit_codes, timeout))
    return out


def run_python(code: str, namespace: dict, loop: asyncio.AbstractEventLoop) -> None:
    compiled = compile(code, "<doc block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # noqa: S307 - running our own documentation
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)


def main(page: str, workdir: str) -> int:
    text = Path(page).read_text()
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    namespace: dict = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    failures = 0
    for block in blocks(text):
        where = f"{page}:{block.line}"
        if block.skip:
            print(f"SKIP {where} ({block.lang}): {block.skip}")
            continue
        print(f"RUN  {where} ({block.lang})", flush=True)
        if block.lang == "python":
            try:
                run_python(block.code, namespace, loop)
            except BaseException:  # noqa: BLE001 - report every failure of the page's code
                print(f"FAIL {where}\n{block.code}\n{traceback.format_exc()}", flush=True)
                failures += 1
                break
        else:
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                capture_output=True, text=True, timeout=block.timeout,
            )  # fmt: skip
            if proc.returncode not in block.exit_codes:
                print(
                    f"FAIL {where}: exit {proc.returncode}\n{block.code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
                failures += 1
                break
    loop.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
