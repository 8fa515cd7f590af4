"""Telling a mistyped local model directory from a Hugging Face hub id, so that a loading error
says what was looked for and where instead of surfacing a hub error ("Repo id must be in the
form...", "couldn't connect to huggingface.co") for a path that never was a hub id.

A name **looks local** when it is absolute, starts with ``./``, ``../`` or ``~``, holds a
backslash or more than one ``/``, ends with ``/``, or when its first part is an existing local
directory (``runs/rll`` next to a ``runs/`` folder). Hub ids are ``name`` or ``org/name``.
"""

from __future__ import annotations

import difflib
import os

__all__ = ["describe_missing", "local_problem", "looks_local"]


def looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path (see the module docstring)."""
    if not name:
        return True
    if os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\", "..\\")) or name in (".", ".."):
        return True
    if "\\" in name or name.count("/") > 1 or name.endswith("/"):
        return True
    first = name.split("/", 1)[0]
    return "/" in name and os.path.isdir(first)


def local_problem(name: str, *, marker: str = "config.json") -> str | None:
    """Why ``name`` is not a usable local model directory, when it names one (exists, or looks
    local); ``None`` when it is one, or may be a hub id."""
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        return f"{os.path.abspath(path)} is a file, not a model directory"
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, marker)):
            return None
        text = (
            f"the directory {os.path.abspath(path)} has no {marker}, so it is not a saved model "
            f"(it holds: {_listing(path)})"
        )
        if any(n.endswith(".gguf") for n in _names(path)):
            text += "; for its GGUF files use Guard.from_gguf (or --gguf)"
        return text
    if looks_local(name):
        return describe_missing(path)
    return None


def describe_missing(path: str) -> str:
    """``no directory /abs/path`` with the closest names in the nearest existing parent."""
    absolute = os.path.abspath(path)
    parent = os.path.dirname(absolute)
    while parent and not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    text = f"there is no directory {absolute}"
    if os.path.isdir(parent):
        wanted = os.path.relpath(absolute, parent).split(os.sep, 1)[0]
        names = _names(parent)
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
        if close:
            text += f"; did you mean {', '.join(os.path.join(parent, c) for c in close)}?"
        else:
            text += f" ({parent} holds: {_listing(parent)})"
    return text


def _names(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _listing(path: str, limit: int = 8) -> str:
    names = _names(path)
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
