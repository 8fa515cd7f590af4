"""A local stand-in for the Hugging Face Hub API, enough for huggingface_hub's upload and download
calls, recording what it was sent.

It is a real HTTP server on 127.0.0.1 (``HF_ENDPOINT`` points the client at it) speaking the
Hub's wire format as huggingface_hub sends it:

- ``POST /api/repos/create``; ``POST /api/models/{repo}/branch/{branch}``;
- ``POST /api/validate-yaml`` (the README metadata check ``create_commit`` makes first);
- ``POST /api/models/{repo}/preupload/{rev}``: answers ``lfs`` for weights (``.gguf``,
  ``.safetensors``, ``.bin``), as the Hub's ``.gitattributes`` does, ``regular`` otherwise;
- the Git LFS batch API ``POST /{repo}.git/info/lfs/objects/batch`` with the ``basic`` transfer
  (``PUT`` of the content, checked against its sha256 and size). The Hub itself answers Xet for
  large files; the client takes LFS when ``HF_HUB_DISABLE_XET=1``, which the tests set;
- ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit (inline base64 files, LFS pointers);
- reading back: ``GET /api/models/{repo}/revision/{rev}`` (``repo_info``) and
  ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (``hf_hub_download``).

Writes need ``Authorization: Bearer <token>``; a wrong token gets the Hub's 401.

Run alone: ``python -m tests.hub_server --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
TOKEN = "hf_test_token"


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: dict[str, str] = field(default_factory=dict)  # branch -> last commit id
    lfs: set[str] = field(default_factory=set)  # paths stored through LFS


@dataclass
class HubState:
    """What the stub holds and what it was sent (``requests``: method, path, body summary)."""

    token: str = TOKEN
    repos: dict[str, Repo] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content (LFS)
    requests: list[dict[str, Any]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)  # each: repo, revision, header, files
    yaml_checked: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    base: str

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    # -------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"},
                   {"X-Error-Message": "Invalid credentials in Authorization header"})  # fmt: skip
        return False

    def _record(self, body: bytes) -> None:
        with self.state.lock:
            self.state.requests.append({"method": self.command, "path": urlsplit(self.path).path,
                                        "auth": self.headers.get("Authorization"), "size": len(body)})  # fmt: skip

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        return repo

    # -------------------------------------------------------------------------- verbs
    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        self._record(body)
        path = unquote(urlsplit(self.path).path)
        parts = path.strip("/").split("/")
        if path == "/api/validate-yaml":
            self.state.yaml_checked.append(json.loads(body)["content"])
            return self._send(200, {"errors": [], "warnings": []})
        if not self._authorised():
            return None
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            if repo_id in self.state.repos:
                return self._send(409, {"error": "You already created this model repo"})
            self.state.repos[repo_id] = Repo(
                private=payload.get("visibility") == "private" or bool(payload.get("private"))
            )
            return self._send(200, {"url": f"{self.base}/{repo_id}", "name": repo_id})
        if path.endswith(".git/info/lfs/objects/batch"):
            payload = json.loads(body)
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.state.blobs:
                    entry["actions"] = {
                        "upload": {"href": f"{self.base}/lfs-upload/{obj['oid']}/{obj['size']}"}
                    }
                objects.append(entry)
            return self._send(200, {"transfer": "basic", "objects": objects})
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id, action, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
            repo = self._repo(repo_id)
            if repo is None:
                return None
            if action == "branch":
                if revision in repo.branches:
                    return self._send(409, {"error": "Reference already exists"})
                repo.branches[revision] = dict(repo.branches["main"])
                return self._send(200, {})
            if revision not in repo.branches:
                return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
            if action == "preupload":
                files = json.loads(body)["files"]
                modes = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                          "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) and f["size"] else "regular"}
                         for f in files]  # fmt: skip
                return self._send(200, {"files": modes})
            if action == "commit":
                return self._commit(repo_id, repo, revision, body)
        return self._send(404, {"error": f"stub: no route for POST {path}"})

    def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        files: dict[str, bytes] = {}
        kinds: dict[str, str] = {}
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                kinds[value["path"]] = "regular"
            elif item["key"] == "lfsFile":
                blob = self.state.blobs.get(value["oid"])
                if blob is None:
                    return self._send(400, {"error": f"LFS object {value['oid']} was never uploaded"})
                files[value["path"]] = blob
                kinds[value["path"]] = "lfs"
        repo.branches[revision].update(files)
        repo.lfs.update(p for p, k in kinds.items() if k == "lfs")
        oid = hashlib.sha1(body).hexdigest()
        repo.commits[revision] = oid
        self.state.commits.append({"repo": repo_id, "revision": revision, "header": header, "files": files,
                                   "kinds": kinds, "oid": oid})  # fmt: skip
        return self._send(
            200, {"success": True, "commitOid": oid, "commitUrl": f"{self.base}/{repo_id}/commit/{oid}"}
        )

    def do_PUT(self) -> None:  # noqa: N802
        body = self._body()
        self._record(body)
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts[0] == "lfs-upload" and len(parts) == 3:
            if hashlib.sha256(body).hexdigest() != parts[1] or len(body) != int(parts[2]):
                return self._send(400, {"error": "content does not match its oid or size"})
            self.state.blobs[parts[1]] = body
            return self._send(200, {})
        return self._send(404, {"error": "stub: no route"})

    def _read(self, head: bool) -> None:
        self._record(b"")
        path = unquote(urlsplit(self.path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            repo = self._repo("/".join(parts[2:4]))
            if repo is None:
                return None
            revision = "/".join(parts[5:])
            if revision not in repo.branches:
                return self._send(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
            files = repo.branches[revision]
            return self._send(200, {"id": "/".join(parts[2:4]), "sha": repo.commits.get(revision, "0" * 40),
                                    "private": repo.private, "siblings": [{"rfilename": f} for f in sorted(files)]},
                              head=head)  # fmt: skip
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo("/".join(parts[:2]))
            if repo is None:
                return None
            revision, filename = parts[3], "/".join(parts[4:])
            branch = next((b for b, c in repo.commits.items() if c == revision), revision)
            data = repo.branches.get(branch, {}).get(filename)
            if data is None:
                return self._send(
                    404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head=head
                )
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": repo.commits.get(branch, "0" * 40), "ETag": f'"{etag}"'}
            return self._send(200, data, headers, head=head)
        return self._send(404, {"error": f"stub: no route for GET {path}"}, head=head)

    def do_GET(self) -> None:  # noqa: N802
        self._read(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._read(head=True)


class HubStub:
    """``with HubStub() as hub:`` serves on 127.0.0.1 (``hub.url``); ``hub.state`` holds what it got."""

    def __init__(self, port: int = 0, token: str = TOKEN):
        self.state = HubState(token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        handler.base = self.url
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with HubStub(args.port) as hub:
        print(hub.url, flush=True)
        threading.Event().wait()
