"""A Hugging Face cache filled by hand, for tests and offline demos of hub ids.

:func:`fill_hub_cache` lays files out as ``hf_hub_download`` leaves them (the cache layout of
huggingface_hub: ``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<path>`` relative links
to the blobs, ``refs/<branch or tag>`` holding the commit), so that ``Guard.from_gguf("org/name",
filename=...)`` and huggingface_hub itself find them with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["fill_hub_cache"]


def fill_hub_cache(
    root: str | os.PathLike[str],
    repo_id: str,
    files: Mapping[str, bytes | str | os.PathLike[str]],
    *,
    commit: str | None = None,
    refs: Sequence[str] = ("main",),
) -> Path:
    """Put ``files`` (path in the repo -> bytes or a local file to copy) into the cache at
    ``root`` as commit ``commit`` of ``repo_id`` (default: a hash of the contents), pointed to by
    ``refs``. Returns the snapshot directory."""
    folder = Path(root) / ("models--" + repo_id.replace("/", "--"))
    contents = {
        name: data if isinstance(data, bytes) else Path(data).read_bytes() for name, data in files.items()
    }
    if commit is None:
        digest = hashlib.sha1()
        for name in sorted(contents):
            digest.update(name.encode() + b"\0" + hashlib.sha256(contents[name]).digest())
        commit = digest.hexdigest()
    for name, content in contents.items():
        blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(content)
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return folder / "snapshots" / commit
