"""The Hugging Face Hub: where guard files come from, and where trained guards go.

- :func:`resolve_gguf`: ``Guard.from_gguf("org/repo", filename="*Q4_K_M.gguf", mmproj="*mmproj*")``
  turns a repo id and glob patterns into local files. The patterns are matched against the repo's
  file list (one ``repo_info`` call, which also pins the commit so model and mmproj come from the
  same one), or, offline (``HF_HUB_OFFLINE=1``) or when the Hub cannot be reached, against the
  snapshot in the local cache (``models--org--repo/snapshots/<commit>/``, the revision read from
  ``refs/<revision>``). Exactly one file must match; then ``hf_hub_download`` fetches it (or
  finds it in the cache). Local paths pass through unchanged.
- :func:`pretrained_problem`: why ``Guard.from_pretrained("org/repo")`` cannot work before
  transformers tries (a local-looking path that does not exist; offline and not cached).
- :func:`upload`: one commit of files (paths or bytes) to a model repo, created if missing
  (``python -m guardrail.training push``, ``export gguf --push``).

Every failure is a :class:`~guardrail.errors.HubError` whose ``reason`` says which (see there);
messages name the repo, the revision, the pattern and the cache directory. ``huggingface_hub``
(the ``hub`` extra) is imported only here, and only when a hub id is used.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail._deps import require
from guardrail._redact import redact
from guardrail.errors import ConfigurationError, HubError, MissingDependencyError

__all__ = [
    "RepoListing",
    "cache_root",
    "is_offline",
    "list_repo",
    "looks_like_repo_id",
    "match_one",
    "pretrained_problem",
    "resolve_gguf",
    "upload",
]

log = logging.getLogger("guardrail.hub")

EXTRA = "hub"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_GLOB = re.compile(r"[*?\[]")
_AUTH_HINT = "log in with `hf auth login` or set HF_TOKEN to a token with access"


def _hf() -> Any:
    return require("huggingface_hub", extra=EXTRA, package="huggingface-hub", feature="the Hugging Face Hub")


def _constants() -> Any:
    _hf()
    import huggingface_hub.constants as constants  # a submodule: not an attribute until imported

    return constants


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """Offline mode: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) now, or as huggingface_hub
    read it when it was imported."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    try:
        import huggingface_hub.constants as constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face cache directory used: ``cache_dir``, else ``HF_HUB_CACHE`` / ``HF_HOME``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(_constants().HF_HUB_CACHE).expanduser()


def looks_like_repo_id(value: Any) -> bool:
    """``org/name`` as a string (a ``Path`` is always local). ``org/name.gguf`` counts as a file."""
    if not isinstance(value, str):
        return False
    return bool(_REPO_ID.match(value)) and ".." not in value and not value.lower().endswith(".gguf")


def _looks_local(value: Any) -> bool:
    """A ``Path``, or a string that can only be a path (absolute, ``./``, ``~``, several parts)."""
    if not isinstance(value, str):
        return True
    return (
        os.path.isabs(value) or value.startswith(("./", "../", "~", ".\\", "..\\"))
        or value.count("/") >= 2 or "\\" in value or value in (".", "..")
    )  # fmt: skip


def _is_hub_id(value: Any) -> bool:
    return looks_like_repo_id(value) and not os.path.exists(os.path.expanduser(value))


# ------------------------------------------------------------------------------ listing
@dataclass(frozen=True)
class RepoListing:
    """The files of one revision of a repo. ``commit``: the resolved commit when known;
    ``source``: ``"hub"`` (asked the Hub) or ``"cache"`` (read the local snapshot)."""

    repo_id: str
    revision: str
    commit: str | None
    files: tuple[str, ...]
    source: str
    cache_dir: Path

    def where(self) -> str:
        if self.source == "hub":
            return f"{self.repo_id} (revision {self.revision}) on {_endpoint()}"
        return f"{self.repo_id} (revision {self.revision}) in the Hugging Face cache at {self.cache_dir}"


def _endpoint() -> str:
    try:
        return str(_constants().ENDPOINT)
    except MissingDependencyError:
        return "the Hub"


def list_repo(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
) -> RepoListing:
    """The files of ``repo_id`` at ``revision`` (default ``main``): from the Hub, or from the
    cache when offline or when the Hub cannot be reached."""
    hf = _hf()
    revision = revision or "main"
    root = cache_root(cache_dir)
    if is_offline():
        return _cached_listing(repo_id, revision, root, why="the Hub is offline (HF_HUB_OFFLINE=1)")
    try:
        info = hf.HfApi().repo_info(repo_id, revision=revision, token=token)
    except Exception as exc:
        error = translate(exc, repo_id, revision, "list the files of")
        if error.reason != "unreachable":
            raise error from exc
        log.warning("%s; using the cached snapshot", error)
        return _cached_listing(repo_id, revision, root, why=str(error))
    files = tuple(sorted(s.rfilename for s in (info.siblings or ())))
    return RepoListing(repo_id, revision, info.sha, files, "hub", root)


def _cached_listing(repo_id: str, revision: str, root: Path, *, why: str) -> RepoListing:
    folder = root / ("models--" + repo_id.replace("/", "--"))
    commit: str | None = revision if _COMMIT.match(revision) else None
    if commit is None:
        ref = folder / "refs" / revision
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
    snapshot = folder / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        cached = _cached_revisions(folder)
        have = f"; cached revisions: {', '.join(cached)}" if cached else "; nothing of it is cached"
        raise HubError(
            f"{repo_id} (revision {revision}) is not in the Hugging Face cache at {root} and {why}{have}. "
            f"Download it while online (`hf download {repo_id}`), point cache_dir= (or HF_HUB_CACHE) at "
            "the cache that holds it, or give a local path.",
            reason="not_cached",
            repo_id=repo_id,
        )
    files = []
    for dirpath, _, names in os.walk(snapshot):
        for name in names:
            full = Path(dirpath) / name
            if full.exists():  # a dangling link is an interrupted download
                files.append(full.relative_to(snapshot).as_posix())
    return RepoListing(repo_id, revision, commit, tuple(sorted(files)), "cache", root)


def _cached_revisions(folder: Path) -> list[str]:
    refs = folder / "refs"
    names = (
        sorted(p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file())
        if refs.is_dir()
        else []
    )
    snaps = folder / "snapshots"
    if snaps.is_dir():
        names += sorted(p.name[:12] for p in snaps.iterdir() if p.is_dir())
    return names


def match_one(
    listing: RepoListing, pattern: str, what: str, candidates: tuple[str, ...] | None = None
) -> str:
    """The one file of ``listing`` that ``pattern`` names (a path in the repo, or a glob matched
    case-insensitively against the whole path); :class:`HubError` when none or several do."""
    pool = listing.files if candidates is None else candidates
    if not _GLOB.search(pattern):
        matches = [f for f in pool if f == pattern] or [f for f in pool if f.lower() == pattern.lower()]
    else:
        matches = [f for f in pool if fnmatch.fnmatchcase(f.lower(), pattern.lower())]
    if len(matches) == 1:
        return matches[0]
    ggufs = tuple(f for f in pool if f.lower().endswith(".gguf")) or pool
    if not matches:
        shown = ", ".join(ggufs[:30]) or "none"
        raise HubError(
            f"no file of {listing.where()} matches {what} {pattern!r}; files there: {shown}",
            reason="no_match", repo_id=listing.repo_id, candidates=ggufs,
        )  # fmt: skip
    raise HubError(
        f"{what} {pattern!r} matches {len(matches)} files of {listing.where()}: {', '.join(matches)}; "
        "give a pattern that matches exactly one",
        reason="ambiguous", repo_id=listing.repo_id, candidates=tuple(matches),
    )  # fmt: skip


def download(listing: RepoListing, filename: str, token: str | bool | None = None) -> Path:
    """The local path of ``filename`` of the listed revision (fetched into the cache if needed)."""
    hf = _hf()
    try:
        path = hf.hf_hub_download(
            listing.repo_id, filename, revision=listing.commit or listing.revision,
            cache_dir=str(listing.cache_dir), token=token, local_files_only=listing.source == "cache",
        )  # fmt: skip
    except Exception as exc:
        raise translate(exc, listing.repo_id, listing.revision, f"download {filename} of") from exc
    return Path(path)


# ------------------------------------------------------------------------------ GGUF
def resolve_gguf(
    model_path: str | os.PathLike[str],
    mmproj: str | os.PathLike[str] | bool | None = None,
    *,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
) -> tuple[Path, Path | None | bool]:
    """Local files for ``Guard.from_gguf``: ``(model, mmproj)``.

    A hub id (``org/name`` that is not a local path) is listed; ``filename`` (default: the only
    ``*.gguf`` without ``mmproj`` in its name) and ``mmproj`` (default: the only ``*mmproj*.gguf``,
    if any; ``False``: none) are matched against it and downloaded. A local path comes back as
    it was (``filename`` then picks a file of a local directory); one that does not exist is a
    :class:`~guardrail.errors.ConfigurationError` saying so, not a Hub error.
    """
    if not _is_hub_id(model_path):
        return _resolve_local(model_path, mmproj, filename, revision, cache_dir)
    repo_id = str(model_path)
    listing = list_repo(repo_id, revision, cache_dir, token)
    ggufs = tuple(f for f in listing.files if f.lower().endswith(".gguf"))
    models = tuple(f for f in ggufs if "mmproj" not in f.rsplit("/", 1)[-1].lower())
    if filename is not None:  # a pattern that does not name the mmproj looks among the models only
        model_file = match_one(
            listing, filename, "filename", None if "mmproj" in filename.lower() else models
        )
    else:
        model_file = match_one(listing, "*.gguf", "the model GGUF (give filename=)", candidates=models)
    mmproj_file: str | None = None
    if mmproj is None:
        projs = tuple(f for f in ggufs if f not in models)
        if len(projs) > 1:
            match_one(listing, "*mmproj*.gguf", "the vision projector (give mmproj=)", candidates=projs)
        mmproj_file = projs[0] if projs else None
    elif mmproj is not False and not (isinstance(mmproj, str) and os.path.isfile(os.path.expanduser(mmproj))):
        if not isinstance(mmproj, str):
            raise ConfigurationError(
                f"mmproj={mmproj!r}: give a pattern or path in {repo_id}, or a local str path"
            )
        mmproj_file = match_one(listing, mmproj, "mmproj")
    model = download(listing, model_file, token)
    if mmproj_file is not None:
        return model, download(listing, mmproj_file, token)
    if mmproj is None or mmproj is False:
        return model, None
    return model, Path(os.path.expanduser(str(mmproj)))


def _resolve_local(
    model_path: Any, mmproj: Any, filename: str | None, revision: str | None, cache_dir: Any
) -> tuple[Path, Any]:
    path = Path(model_path).expanduser()
    if revision is not None or cache_dir is not None:
        raise ConfigurationError(
            f"revision= and cache_dir= apply to Hugging Face repos (org/name); {str(model_path)!r} is a local path"
        )
    if not path.exists():
        hint = ""
        if looks_like_repo_id(str(model_path)) and str(model_path).lower().endswith(".gguf"):
            hint = " (a hub repo is org/name, with filename= for the file in it)"
        raise ConfigurationError(f"no GGUF model at {path}: no such file or directory{hint}")
    if filename is not None:
        if not path.is_dir():
            raise ConfigurationError(f"filename= picks a file of a directory or hub repo; {path} is a file")
        files = tuple(sorted(p.relative_to(path).as_posix() for p in path.rglob("*.gguf") if p.is_file()))
        listing = RepoListing(str(path), "-", None, files, "local", path)
        path = path / match_one(listing, filename, "filename")
    mm = None if mmproj is False else mmproj
    return path, mm


# ------------------------------------------------------------------------------ from_pretrained
def pretrained_problem(
    path: str | os.PathLike[str], revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """Why ``from_pretrained(path)`` cannot work, said plainly, or ``None`` when it may: a
    local-looking path that does not exist; a hub id while offline with nothing cached."""
    if os.path.exists(os.path.expanduser(os.fspath(path))):
        return None
    if _looks_local(path):
        return f"no such file or directory: {os.fspath(path)}"
    if not looks_like_repo_id(path):
        return None  # a bare name: let transformers say what it is
    if not is_offline():
        return None
    try:
        listing = _cached_listing(str(path), revision or "main", cache_root(cache_dir),
                                  why="the Hub is offline (HF_HUB_OFFLINE=1)")  # fmt: skip
    except HubError as exc:
        return str(exc)
    except MissingDependencyError:
        return None
    if "config.json" not in listing.files:
        return f"the cached snapshot of {listing.where()} has no config.json (a partial download?)"
    return None


# ------------------------------------------------------------------------------ errors
def translate(exc: BaseException, repo_id: str, revision: str | None, action: str) -> HubError:
    """A huggingface_hub / HTTP exception as a :class:`HubError` saying what failed and why
    (secrets in it masked: the environment's token, ``Bearer ...``, URL credentials)."""
    error = _translate(exc, repo_id, revision, action)
    cleaned = redact(str(error), [os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")])
    if cleaned != str(error):
        error = HubError(cleaned, reason=error.reason, repo_id=repo_id, candidates=error.candidates)
    return error


def _translate(exc: BaseException, repo_id: str, revision: str | None, action: str) -> HubError:
    from huggingface_hub import errors as hf_errors

    what = f"cannot {action} {repo_id}" + (f" (revision {revision})" if revision else "")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = str(exc).strip().splitlines()
    detail = next((line for line in first if line.strip()), type(exc).__name__)
    if isinstance(exc, hf_errors.GatedRepoError):
        return HubError(f"{what}: the repo is gated; accept its conditions on the model page and {_AUTH_HINT}",
                        reason="auth", repo_id=repo_id)  # fmt: skip
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return HubError(f"{what}: no such revision on {_endpoint()}", reason="not_found", repo_id=repo_id)
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return HubError(
            f"{what}: no such repo on {_endpoint()}, or it is private and the token cannot see it ({_AUTH_HINT})",
            reason="not_found", repo_id=repo_id,
        )  # fmt: skip
    if isinstance(exc, hf_errors.EntryNotFoundError) and not isinstance(
        exc, hf_errors.LocalEntryNotFoundError
    ):
        return HubError(f"{what}: no such file in the repo", reason="not_found", repo_id=repo_id)
    if status in (401, 403):
        return HubError(f"{what}: the Hub refused the token (HTTP {status}); {_AUTH_HINT}",
                        reason="auth", repo_id=repo_id)  # fmt: skip
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        return HubError(f"{what}: not in the local cache and the Hub cannot be used ({detail})",
                        reason="not_cached", repo_id=repo_id)  # fmt: skip
    if isinstance(exc, hf_errors.HfHubHTTPError) and status is not None:
        return HubError(f"{what}: HTTP {status} from {_endpoint()}: {detail}", reason="http", repo_id=repo_id)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__module__.startswith("httpx"):
        return HubError(f"{what}: the Hub at {_endpoint()} cannot be reached ({detail})",
                        reason="unreachable", repo_id=repo_id)  # fmt: skip
    return HubError(f"{what}: {type(exc).__name__}: {detail}", reason="http", repo_id=repo_id)


# ------------------------------------------------------------------------------ upload
def upload(
    repo_id: str,
    files: Mapping[str, str | os.PathLike[str] | bytes],
    *,
    commit_message: str,
    private: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
) -> str:
    """Commit ``files`` (path in the repo -> local path or bytes) to the model repo ``repo_id``,
    creating the repo (``private``) and the branch ``revision`` when missing. Returns the commit
    URL. Large files go up the way the Hub asks (Xet or LFS); small ones inline."""
    hf = _hf()
    if not looks_like_repo_id(repo_id):
        raise ConfigurationError(f"--repo must be a Hugging Face repo id (org/name); got {repo_id!r}")
    if is_offline():
        raise HubError(f"cannot push to {repo_id}: the Hub is offline (HF_HUB_OFFLINE=1); unset it to upload",
                       reason="unreachable", repo_id=repo_id)  # fmt: skip
    api = hf.HfApi(token=token)
    operations = [
        hf.CommitOperationAdd(
            path_in_repo=name, path_or_fileobj=data if isinstance(data, bytes) else os.fspath(data)
        )
        for name, data in sorted(files.items())
    ]
    step = "create"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            step = f"create branch {revision} of"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        step = "upload to"
        info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=revision)
    except HubError:
        raise
    except Exception as exc:
        if isinstance(exc, ValueError) and getattr(exc, "response", None) is None:
            if "metadata" not in str(exc):
                raise  # a bad argument, not the Hub's answer
            # the Hub's check of the card's metadata (validate-yaml) refused it
            raise HubError(redact(f"cannot {step} {repo_id}: {exc}"), reason="http", repo_id=repo_id) from exc
        raise translate(exc, repo_id, revision, step) from exc
    return str(getattr(info, "commit_url", info))
