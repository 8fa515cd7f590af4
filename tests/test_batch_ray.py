"""The batch job's Ray engine on a local Ray cluster (CPU, the real tiny model).

Ray's processes listen on every interface and advertise the machine's address; no Ray setting
keeps them on loopback. So each job runs in a network namespace made for it, holding only
loopback (``unshare -n``, then ``ip link set lo up``): the cluster cannot be reached from, or
reach, anything else. Where namespaces cannot be made, the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, make_image, subprocess_env
from tests.test_batch import assert_each_row_once, helper_config, read_output, wait_for, write_jsonl

pytestmark = pytest.mark.slow
pytest.importorskip("ray.data", reason="the ray extra is not installed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

HELPER = str(REPO / "tests" / "batch_helper.py")


@pytest.fixture(scope="module")
def loopback_namespace() -> list[str]:
    """The command prefix that runs a command in a fresh network namespace with only loopback."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("unshare or ip is not installed: cannot keep Ray on loopback")
    prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "ip", "-o", "link"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here (unshare -n: {probe.stderr.strip()[:200]})")
    assert [line.split(":")[1].strip() for line in probe.stdout.splitlines()] == ["lo"]
    return prefix


def run_helper(prefix: list[str], config: Path, timeout: float = 400) -> dict:
    done = subprocess.run([*prefix, PYTHON, HELPER, str(config)], env=subprocess_env(RAY_DISABLE_USAGE_STATS="1"),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(config.read_text()).get("result")
    return {**(json.loads(Path(result).read_text()) if result else {}), "stdout": done.stdout}


def log_entries(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def assert_same_verdicts(got: list[dict], want: list[dict]) -> None:
    """Labels, decisions and paths equal; scores equal but for float rounding (rows are batched
    differently, so padding differs)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for key in ("row_index", "prompt", "allowed", "harmful", "request_harmful", "response_harmful",
                    "decided_by", "path", "error", "model"):  # fmt: skip
            assert g[key] == w[key], (key, g, w)
        assert g["score"] == pytest.approx(w["score"], abs=1e-5)


def test_killed_actor_is_replaced_and_every_row_is_written_once_with_the_local_verdicts(
    tmp_path, tiny_vl_path, loopback_namespace
):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"request number {i}", "id": i} for i in range(32)])
    log = tmp_path / "ray.log"
    config = helper_config(tmp_path, tiny_vl_path, input=str(src), output=str(tmp_path / "ray"), engine="ray",
                           num_workers=2, delay=0.3, log=str(log), kill_after=1,
                           result=str(tmp_path / "ray.json"))  # fmt: skip
    result = run_helper(loopback_namespace, config)
    assert (
        "started a local Ray (2 CPUs) with its dashboard off, on node address 127.0.0.1" in result["stdout"]
    )
    (killed,) = result["killed"]
    entries = log_entries(log)
    starts = [int(e[1]) for e in entries if e[0] == "start"]
    assert killed in starts and len(starts) >= 3  # two actors, then the replacement of the killed one
    assert starts.index(killed) < 2  # one of the first two actors, killed after its first batch
    first_batch = next(i for i, e in enumerate(entries) if e[0] == "batch" and int(e[1]) == killed)
    assert any(e[0] == "start" for e in entries[first_batch:])  # its replacement started after that
    assert result["summary"]["complete"] and result["summary"]["rows"] == 32
    rows = read_output(tmp_path / "ray")
    assert_each_row_once(rows, 32)
    assert [r["id"] for r in rows] == list(range(32))
    local = helper_config(tmp_path, tiny_vl_path, input=str(src), output=str(tmp_path / "local"),
                          log=str(tmp_path / "local.log"), result=str(tmp_path / "local.json"))  # fmt: skip
    run_helper([], local)
    assert_same_verdicts(rows, read_output(tmp_path / "local"))


def namespace_processes(namespace: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == namespace:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_killed_ray_job_is_finished_by_a_rerun_after_a_local_start_with_the_same_jsonl_lines(
    tmp_path, tiny_vl_path, loopback_namespace
):
    png = make_image()
    n = 24
    table = pa.table({"prompt": [f"describe picture {i}" for i in range(n)],
                      "images": [[png] if i % 4 == 0 else [] for i in range(n)]})  # fmt: skip
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=5)
    common = {"input": str(tmp_path / "in.parquet"), "format": "jsonl", "shard_size": 4}
    run_helper([], helper_config(tmp_path, tiny_vl_path, output=str(tmp_path / "full"), **common))
    expected = read_output(tmp_path / "full")
    # a local run that got a third of the way: two of its six files
    shutil.copytree(tmp_path / "full", tmp_path / "mixed")
    for f in sorted((tmp_path / "mixed" / "data").iterdir())[2:]:
        f.unlink()
    data = tmp_path / "mixed" / "data"
    slow = helper_config(tmp_path, tiny_vl_path, output=str(tmp_path / "mixed"), engine="ray", num_workers=1,
                         delay=0.5, **common)  # fmt: skip
    proc = subprocess.Popen([*loopback_namespace, PYTHON, HELPER, str(slow)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: sum(p.name.startswith("ray-") for p in data.iterdir()) >= 1, timeout=300)
        namespace = os.readlink(f"/proc/{proc.pid}/ns/net")
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver: Ray's processes share its fate
        proc.wait()
    wait_for(lambda: not namespace_processes(namespace), timeout=120)
    kept = {p.name: p.read_bytes() for p in data.iterdir()}
    assert sum(name.startswith("ray-") for name in kept) >= 1
    finish = helper_config(tmp_path, tiny_vl_path, output=str(tmp_path / "mixed"), engine="ray", num_workers=1,
                           result=str(tmp_path / "mixed.json"), **common)  # fmt: skip
    result = run_helper(loopback_namespace, finish)
    assert 0 < result["summary"]["run"]["rows"] < n - 8 and result["summary"]["complete"]
    for (
        name,
        content,
    ) in kept.items():  # what was finished is not rewritten (an unfinished file would be gone)
        assert not (data / name).exists() or (data / name).read_bytes() == content
    assert sum(p.name.startswith("local-") for p in data.iterdir()) == 2
    rows = read_output(tmp_path / "mixed")
    assert_each_row_once(rows, n)
    assert_same_verdicts(rows, expected)
    assert [r["images"] for r in rows] == [
        r["images"] for r in expected
    ]  # bytes in base64, as written locally
    assert sum(bool(r["images"]) for r in rows) == 6


def test_bench_script_runs_with_tiny_sizes(loopback_namespace):
    done = subprocess.run([PYTHON, str(REPO / "bench" / "batch.py"), "--rows", "8", "--new-tokens", "2",
                           "--workers", "1", "--rounds", "1"], env=subprocess_env(), capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "local " in done.stdout and "ray x1 " in done.stdout and "ray x1 takes" in done.stdout


def test_existing_cluster_through_ray_address(tmp_path, tiny_vl_path, loopback_namespace):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"request {i}"} for i in range(8)])
    config = helper_config(tmp_path, tiny_vl_path, input=str(src), output=str(tmp_path / "out"), engine="ray",
                           ray_address="auto", result=str(tmp_path / "result.json"))  # fmt: skip
    ray = str(Path(PYTHON).parent / "ray")
    script = (f"{ray} start --head --num-cpus 2 --include-dashboard false --disable-usage-stats >/dev/null && "
              f"{PYTHON} {HELPER} {config}; status=$?; {ray} stop --force >/dev/null; exit $status")  # fmt: skip
    done = subprocess.run([*loopback_namespace, "sh", "-c", script], env=subprocess_env(), capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "started a local Ray" not in done.stdout  # it joined the running cluster
    assert json.loads((tmp_path / "result.json").read_text())["summary"]["complete"]
    assert_each_row_once(read_output(tmp_path / "out"), 8)
