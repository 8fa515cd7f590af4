"""What a hostile client can make the moderation server do (issue: security), over real HTTP.

Server-side files, internal URLs, decompression bombs, work before authentication, slow bodies,
secrets and paths in responses. Each case runs the real app under uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from guardrail import BackendError, Guard, InputLimits
from guardrail.netfetch import FetchError, FetchPolicy, address_allowed, fetch
from guardrail.server import ServerSettings, create_app
from guardrail.server.media import LOCAL_REFUSED
from guardrail.testing import FakeBackend, result_output, serve_app
from tests.backends.test_remote import free_port
from tests.conftest import PYTHON, REPO, make_image, subprocess_env, wait_until_up

AUTH = {"Authorization": "Bearer k"}
PNG = make_image()
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def recording_guard(**limits) -> tuple[Guard, list]:
    seen: list = []

    def respond(prompt):
        seen.append(prompt)
        return result_output("unharmful")

    return Guard(FakeBackend(respond=respond), limits=InputLimits(**limits)), seen


def guard_body(images):
    return {"prompt": "describe", "images": images}


def moderation_body(url):
    return {"input": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": url}}]}


# --------------------------------------------------------------- 1. server-side files
def local_sources(tmp_path: Path) -> dict[str, str]:
    picture = tmp_path / "private.png"
    picture.write_bytes(PNG)
    (tmp_path / "link.png").symlink_to(picture)
    (tmp_path / "notes.txt").write_text("not an image")
    return {
        "absolute path to an image": str(picture),
        "symlink to an image": str(tmp_path / "link.png"),
        "relative path": os.path.relpath(picture),
        "dot-dot path": str(tmp_path / "sub" / ".." / "private.png"),
        "missing file": str(tmp_path / "nope.png"),
        "a text file": str(tmp_path / "notes.txt"),
        "a directory": str(tmp_path),
        "file URL": picture.as_uri(),
        "/etc/passwd": "/etc/passwd",
        "ftp URL": "ftp://127.0.0.1/x.png",
        "http URL (remote images off)": "http://127.0.0.1:9/x.png",
    }


@pytest.mark.parametrize("endpoint", ["/v1/guard", "/v1/moderations"])
def test_no_client_string_is_ever_opened_as_a_server_file(tmp_path, endpoint):
    guard, seen = recording_guard()
    sources = local_sources(tmp_path)
    with serve_app(create_app(guard)) as url:
        answers = {}
        for name, source in sources.items():
            body = guard_body([source]) if endpoint == "/v1/guard" else moderation_body(source)
            r = httpx.post(url + endpoint, json=body, timeout=30)
            assert r.status_code == 400, (name, r.text)
            answers[name] = r.json()["error"]["message"]
        ok = httpx.post(url + endpoint, json=guard_body([DATA_URL]) if endpoint == "/v1/guard"
                        else moderation_body(DATA_URL), timeout=30)  # fmt: skip
    assert ok.status_code == 200
    # one fixed answer, whatever exists on the server's disk: no file-existence oracle
    local = {k: v for k, v in answers.items() if "remote images off" not in k}
    assert set(local.values()) == {f"image 0: {LOCAL_REFUSED}"}
    assert answers["http URL (remote images off)"].startswith(f"image 0: {LOCAL_REFUSED}")
    assert len(seen) == 1  # only the inline image reached the model


def test_the_python_api_still_takes_paths_from_the_app(tmp_path):
    guard, seen = recording_guard()
    (tmp_path / "a.png").write_bytes(PNG)
    assert guard.moderate(prompt="x", images=[tmp_path / "a.png"]).allowed
    assert len(seen[0].images) == 1


# -------------------------------------------------------------------- remote image URLs
class ImageServer:
    """A small HTTP server on a loopback address that records every request it gets."""

    def __init__(self, host: str):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                hits.append((self.path, dict(self.headers)))
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/redirect/"))
                    self.end_headers()
                elif self.path == "/big":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(64):
                            self.wfile.write(b"\0" * 65536)
                    except OSError:
                        pass
                elif self.path == "/slow":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(40):
                            self.wfile.write(PNG[:1])
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:
                        pass
                elif not self.path.endswith(".png"):
                    self.send_error(404)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PNG)))
                    self.end_headers()
                    self.wfile.write(PNG)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def images_public():
    """Stands for a public image host: 127.0.0.2, opened to fetches by remote_allowed_networks."""
    s = ImageServer("127.0.0.2")
    yield s
    s.close()


@pytest.fixture
def images_internal():
    """Stands for an internal service on loopback, which fetches must never reach."""
    s = ImageServer("127.0.0.1")
    yield s
    s.close()


OPEN = ("127.0.0.2/32",)


def test_address_rules():
    refused = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200",
               "0.0.0.0", "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "224.0.0.1", "fc00::1"]  # fmt: skip
    assert [a for a in refused if address_allowed(a)] == []
    assert address_allowed("8.8.8.8") and address_allowed("2606:4700:4700::1111")


def test_fetch_refuses_internal_addresses_before_connecting(images_internal):
    for url in (
        images_internal.url + "/a.png",
        images_internal.url.replace("127.0.0.1", "localhost") + "/a.png",
    ):
        with pytest.raises(FetchError, match="refused address"):
            fetch(url)
    with pytest.raises(FetchError, match="credentials"):
        fetch("http://user:pw@example.com/a.png")
    with pytest.raises(FetchError, match="scheme"):
        fetch("file:///etc/passwd")
    assert images_internal.hits == []


def test_fetch_checks_every_redirect(images_public, images_internal):
    policy = FetchPolicy(allowed_networks=OPEN)
    assert fetch(images_public.url + "/a.png", policy) == PNG
    with pytest.raises(FetchError, match="refused address"):
        fetch(images_public.url + "/redirect/" + images_internal.url + "/secret.png", policy)
    assert images_internal.hits == []  # the redirect target was never contacted
    with pytest.raises(FetchError, match="redirects"):
        fetch(images_public.url + "/redirect/" * 1 + "/redirect/" * 5 + "/a.png", policy)


def test_fetch_bounds_size_and_time(images_public):
    with pytest.raises(FetchError, match="over"):
        fetch(images_public.url + "/big", FetchPolicy(allowed_networks=OPEN, max_bytes=100_000))
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(images_public.url + "/slow", FetchPolicy(allowed_networks=OPEN, timeout_s=0.5))
    assert time.monotonic() - t0 < 3  # the drip does not extend the deadline


def test_fetch_sends_no_credentials(images_public, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxyuser:secret@127.0.0.1:9")
    assert fetch(images_public.url + "/a.png", FetchPolicy(allowed_networks=OPEN)) == PNG
    headers = {k.lower() for k in images_public.hits[-1][1]}
    assert not headers & {"authorization", "cookie", "proxy-authorization"}


def test_server_fetches_remote_images_only_when_the_operator_allows(images_public, images_internal):
    guard, seen = recording_guard()
    on = ServerSettings(allow_remote_images=True, remote_allowed_networks=OPEN)
    with serve_app(create_app(guard)) as off_url, serve_app(create_app(guard, on)) as on_url:
        r = httpx.post(off_url + "/v1/guard", json=guard_body([images_public.url + "/a.png"]), timeout=30)
        assert r.status_code == 400 and "does not fetch" in r.json()["error"]["message"]
        assert images_public.hits == []
        r = httpx.post(on_url + "/v1/guard", json=guard_body([images_public.url + "/a.png"]), timeout=30)
        assert r.status_code == 200 and len(seen) == 1
        answers = set()
        for url in (images_internal.url + "/a.png",
                    images_public.url + "/redirect/" + images_internal.url + "/a.png",
                    "http://169.254.169.254/latest/meta-data/", images_public.url + "/missing"):  # fmt: skip
            r = httpx.post(on_url + "/v1/moderations", json=moderation_body(url), timeout=30)
            assert r.status_code == 400
            answers.add(r.json()["error"]["message"])
    assert len(answers) == 1  # refused, unreachable or not found: the same answer
    assert images_internal.hits == []


# ------------------------------------------------------------------ 3. decompression bombs
def webp_bomb(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 10, 10)).save(buf, format="WEBP", lossless=True, quality=0, method=0)
    return buf.getvalue()


def test_pixels_are_bounded_per_request():
    bomb = webp_bomb(2000)  # 4 MP from a few hundred bytes
    assert len(bomb) < 20_000
    guard, seen = recording_guard(max_image_pixels=5_000_000, max_request_pixels=10_000_000)
    assert guard.moderate(prompt="x", images=[bomb, bomb]).allowed
    with pytest.raises(Exception, match="max_request_pixels"):
        guard.moderate(prompt="x", images=[bomb, bomb, bomb])
    with serve_app(create_app(guard)) as url:
        b64 = "data:image/webp;base64," + base64.b64encode(bomb).decode()
        r = httpx.post(url + "/v1/guard", json=guard_body([b64] * 3), timeout=60)
        assert r.status_code == 400 and "limit is 10000000" in r.json()["error"]["message"]
    assert len(seen) == 1


SERVER_SCRIPT = """
import sys, time, uvicorn
from guardrail import Guard, InputLimits
from guardrail.server import ServerSettings, create_app
from guardrail.testing import FakeBackend, result_output

def respond(prompt):
    backend.calls.clear()  # the test double records every prompt: keep no images alive here
    time.sleep(0.4)  # the decoded images stay held while the model runs
    return result_output()

backend = FakeBackend(respond=respond)
guard = Guard(backend, batching=False,
              limits=InputLimits(max_image_pixels=10_000_000, max_request_pixels=20_000_000))
app = create_app(guard, ServerSettings(max_pixels_in_flight=int(sys.argv[2]), max_concurrency=64))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
@pytest.mark.parametrize("budget", [20_000_000])  # 400 M here grows ~1 GB: the test fails
def test_memory_stays_bounded_under_concurrent_bombs(tmp_path, budget):
    script = tmp_path / "serve.py"
    script.write_text(SERVER_SCRIPT)
    bomb = "data:image/webp;base64," + base64.b64encode(webp_bomb(3000)).decode()  # 9 MP each
    port = free_port()
    # one malloc arena: RSS then follows what the server holds, not how many worker threads
    # each kept their own arena's high-water mark (docs/server.md recommends a small value too)
    env = {**subprocess_env(), "MALLOC_ARENA_MAX": "1"}
    log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([PYTHON, str(script), str(port), str(budget)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/healthz", proc, tmp_path / "server.log")
        assert httpx.post(base + "/v1/guard", json=guard_body([DATA_URL]), timeout=60).status_code == 200
        baseline = peak_rss_mb(proc.pid)
        statuses: list[int] = []

        def send(images):
            statuses.append(httpx.post(base + "/v1/guard", json=guard_body(images), timeout=120).status_code)

        # over the request budget: refused from the headers, nothing decoded
        threads = [threading.Thread(target=send, args=([bomb] * 8,)) for _ in range(4)]
        # within it (2 x 9 MP): eight at once would hold 144 MP; the server holds 20 MP at a time
        threads += [threading.Thread(target=send, args=([bomb] * 2,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        grown = peak_rss_mb(proc.pid) - baseline
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert sorted(statuses) == [200] * 8 + [400] * 4
    # 20 MP in flight: RGB(A) decode plus conversion, well under what 144 MP would take (>800 MB)
    assert grown < 350, f"server grew by {grown:.0f} MB"


# ------------------------------------------------------- 4. work before auth and limits
def test_nothing_is_parsed_before_the_api_key(tmp_path):
    guard, _ = recording_guard()
    with serve_app(create_app(guard, ServerSettings(api_key="k"))) as url:
        for path in ("/v1/guard", "/v1/moderations"):
            r = httpx.post(url + path, content=b"{not json", headers={"Content-Type": "application/json"})
            assert r.status_code == 401  # not 422: the body was never looked at
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert httpx.get(url + path).status_code == 401, path
            assert httpx.get(url + path, headers=AUTH).status_code == 200, path
        assert httpx.get(url + "/healthz").status_code == 200
        assert httpx.get(url + "/readyz").json() == {"status": "ready"}
        # a client that announces a large body and sends none is answered at once
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/guard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 30000000\r\n\r\n{")  # fmt: skip
            assert sock.recv(4096).startswith(b"HTTP/1.1 401")


def test_a_slow_body_is_cut_off():
    guard, seen = recording_guard()
    with serve_app(create_app(guard, ServerSettings(body_timeout_s=0.5))) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/guard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")  # fmt: skip
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and seen == []


def test_counts_are_checked_before_the_body_is_validated():
    guard, seen = recording_guard()
    with serve_app(create_app(guard, ServerSettings(max_inputs=4))) as url:
        r = httpx.post(url + "/v1/moderations", json={"input": ["x"] * 300_000}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["message"] == "input must hold 1 to 4 items"
        r = httpx.post(url + "/v1/guard", json={"prompt": "x", "images": [1] * 100_000}, timeout=60)
        assert r.status_code == 400 and "images given" in r.json()["error"]["message"]
    assert seen == []


# ------------------------------------------------------------- 7. secrets and internals
def test_responses_carry_no_secrets_paths_or_upstream_texts(tmp_path):
    secret = "http://admin:hunter2@10.1.2.3:8000/v1 said: internal stack trace"
    model_dir = tmp_path / "srv" / "models" / "my-guard"
    failing = Guard(FakeBackend(error=BackendError(secret), model_name=str(model_dir)))
    raising = Guard(FakeBackend(error=BackendError(secret), model_name=str(model_dir)), on_error="raise")
    ok = Guard(FakeBackend(model_name=str(model_dir)))
    with (
        serve_app(create_app(failing)) as a,
        serve_app(create_app(raising)) as b,
        serve_app(create_app(ok)) as c,
    ):
        blocked = httpx.post(a + "/v1/guard", json={"prompt": "x"}).json()
        moderation = httpx.post(a + "/v1/moderations", json={"input": "x"}).json()
        error = httpx.post(b + "/v1/guard", json={"prompt": "x"})
        verdict = httpx.post(c + "/v1/guard", json={"prompt": "x"}).json()
    assert blocked["allowed"] is False and blocked["decided_by"] == "policy"
    assert error.status_code == 502 and error.json()["error"]["message"] == "the guard backend failed"
    for text in (json.dumps(blocked), json.dumps(moderation), error.text, json.dumps(verdict)):
        assert "hunter2" not in text and "10.1.2.3" not in text and str(tmp_path) not in text
    assert verdict["model"] == blocked["model"] == moderation["model"] == "my-guard"


def test_serve_takes_the_api_key_from_a_file_or_the_environment(tmp_path, tiny_vl_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    port = free_port()
    log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [PYTHON, "-m", "guardrail", "serve", "--model", str(tiny_vl_path), "--port", str(port),
         "--api-key-file", str(key_file), "--log-level", "warning", "--served-model-name", "guard-x",
         "--max-new-tokens", "8"],
        cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/readyz", proc, tmp_path / "server.log")
        assert httpx.post(base + "/v1/moderations", json={"input": "x"}).status_code == 401
        r = httpx.post(base + "/v1/moderations", json={"input": "x"},
                       headers={"Authorization": "Bearer s3cret"}, timeout=120)  # fmt: skip
        assert r.status_code == 200 and r.json()["model"] == "guard-x"
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    assert "s3cret" not in " ".join(proc.args)
    assert "process list" not in (tmp_path / "server.log").read_text()  # no --api-key warning
