"""`python -m guardrail serve` as a real process: start, answer, shut down gracefully."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx
import openai
import pytest

from tests.backends.test_remote import free_port
from tests.conftest import PYTHON, REPO, subprocess_env, wait_until_up

pytestmark = pytest.mark.slow


def test_serve_answers_and_finishes_in_flight_requests_on_sigterm(tiny_vl_path, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [PYTHON, "-m", "guardrail", "serve", "--model", str(tiny_vl_path), "--port", str(port),
         "--max-new-tokens", "300", "--api-key", "k", "--log-level", "warning"],
        cwd=REPO, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/readyz", proc, tmp_path / "server.log")
        with openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0) as client:
            assert len(client.moderations.create(input="hello").results) == 1
        # a request in flight when SIGTERM arrives still gets its answer
        result: dict = {}

        def slow_request() -> None:
            r = httpx.post(
                base + "/v1/guard",
                json={"prompt": "a long check"},
                headers={"Authorization": "Bearer k"},
                timeout=120,
            )
            result["status"] = r.status_code
            result["body"] = r.json()

        t = threading.Thread(target=slow_request)
        t.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert result.get("status") == 200 and "decided_by" in result["body"]
        # uvicorn finishes the in-flight work, then re-raises SIGTERM so supervisors see it
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_refuses_public_bind_without_api_key(tiny_vl_path):
    proc = subprocess.run(
        [PYTHON, "-m", "guardrail", "serve", "--model", str(tiny_vl_path), "--host", "0.0.0.0"],
        cwd=REPO, env=subprocess_env(GUARDRAIL_API_KEY=""), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "refusing to serve on 0.0.0.0" in proc.stderr
