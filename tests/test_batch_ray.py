"""The batch job's Ray engine on a local Ray cluster (CPU, the real tiny model).

Ray's processes listen on every interface and advertise the machine's address; no Ray setting
keeps them on loopback. So each job runs in a network namespace made for it, holding only
loopback (``unshare -n``, then ``ip link set lo up``): the cluster cannot be reached from, or
reach, anything else. Where namespaces cannot be made, the tests skip and say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, REPO, make_image, subprocess_env
from tests.test_batch import assert_each_row_once, helper_config, read_output, write_jsonl

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
    return json.loads(Path(result).read_text()) if result else {}


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


def test_ray_finishes_what_the_local_engine_left_with_the_same_jsonl_lines(
    tmp_path, tiny_vl_path, loopback_namespace
):
    png = make_image()
    n = 20
    table = pa.table({"prompt": [f"describe picture {i}" for i in range(n)],
                      "images": [[png] if i % 4 == 0 else [] for i in range(n)]})  # fmt: skip
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=6)
    common = {"input": str(tmp_path / "in.parquet"), "format": "jsonl", "shard_size": 5}
    full = helper_config(tmp_path, tiny_vl_path, output=str(tmp_path / "full"), **common)
    run_helper([], full)
    expected = {r["row_index"]: r for r in read_output(tmp_path / "full")}
    # a local run that got half way: copy two of its four files into a fresh output folder
    shutil.copytree(tmp_path / "full", tmp_path / "mixed")
    for f in sorted((tmp_path / "mixed" / "data").iterdir())[2:]:
        f.unlink()
    mixed = helper_config(tmp_path, tiny_vl_path, output=str(tmp_path / "mixed"), engine="ray", num_workers=1,
                          result=str(tmp_path / "mixed.json"), **common)  # fmt: skip
    result = run_helper(loopback_namespace, mixed)
    assert result["summary"]["run"]["skipped"] == 10 and result["summary"]["run"]["rows"] == 10
    files = sorted(p.name for p in (tmp_path / "mixed" / "data").iterdir())
    assert (
        sum(name.startswith("ray-") for name in files) >= 1
        and sum(name.startswith("local-") for name in files) == 2
    )
    rows = read_output(tmp_path / "mixed")
    assert_each_row_once(rows, n)
    assert_same_verdicts(rows, [expected[i] for i in range(n)])
    assert all(r["images"] == expected[r["row_index"]]["images"] for r in rows)  # base64, as written locally
    assert sum(bool(r["images"]) for r in rows) == 5
