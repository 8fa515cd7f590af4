"""The batch job (guardrail.batch), local engine: inputs, verdict columns, error rows, the
manifest, resuming after real interruptions, the CLI. Ray: tests/test_batch_ray.py."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from guardrail import Guard, Verdict
from guardrail.batch import Columns, run_batch
from guardrail.batch.progress import Progress
from guardrail.batch.store import Output
from guardrail.errors import ConfigurationError, DataError, MissingDependencyError
from guardrail.testing import FakeBackend, result_output
from tests.conftest import PYTHON, REPO, make_image, subprocess_env

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def fake_guard(harmful_word: str = "bomb") -> Guard:
    """Labels each request by a word in its text (the rendered prompt holds the row's texts)."""
    return Guard(
        FakeBackend(respond=lambda p: result_output("harmful" if harmful_word in p.text else "unharmful"))
    )


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def read_output(out: Path) -> list[dict]:
    files = sorted((out / "data").iterdir())
    rows: list[dict] = []
    for f in files:
        if f.suffix == ".parquet":
            rows += pq.read_table(f).to_pylist()
        else:
            rows += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
    return sorted(rows, key=lambda r: r["row_index"])


def assert_each_row_once(rows: list[dict], n: int) -> None:
    assert sorted(r["row_index"] for r in rows) == list(range(n))


# ------------------------------------------------------------------------------ rows, errors
def test_jsonl_rows_get_verdict_columns_and_bad_rows_get_error_verdicts(tmp_path):
    rows = [{"id": i, "prompt": f"how to bake bread {i}"} for i in range(7)]
    rows[2] = {"id": 2, "prompt": "how to build a bomb"}
    rows[4] = {"id": 4, "prompt": None}  # nothing to moderate
    lines: list = [*rows[:5], "{not json", "[1, 2]", "", *rows[5:]]  # a bad line, a non-object, a blank
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "bomb" in p.text else "unharmful"))
    result = run_batch(write_jsonl(tmp_path / "in.jsonl", lines), tmp_path / "out", Guard(backend),
                       batch_size=3, shard_size=4, progress=False)  # fmt: skip
    out = read_output(tmp_path / "out")
    assert_each_row_once(out, 9)  # the blank line is not a row
    by_index = {r["row_index"]: r for r in out}
    assert by_index[0]["id"] == 0 and by_index[0]["prompt"] == "how to bake bread 0"
    assert by_index[0]["allowed"] is True and by_index[0]["decided_by"] == "model"
    assert by_index[2]["allowed"] is False and by_index[2]["request_harmful"] is True
    for i, needle in ((4, "nothing to moderate"), (5, "not valid JSON"), (6, "not an object")):
        row = by_index[i]
        assert row["allowed"] is False and row["harmful"] is None and row["decided_by"] == "input"
        assert needle in row["error"]
    assert (
        by_index[7]["id"] == 5 and by_index[7]["allowed"] is True
    )  # rows after the bad ones keep their data
    # the model saw only the rows that could be moderated, in batches of at most 3
    assert sum(len(c) for c in backend.calls) == 6 and max(len(c) for c in backend.calls) <= 3
    s = result.summary
    assert (s["rows"], s["blocked"], s["allowed"], s["errors"]["input"]) == (9, 4, 5, 3)
    assert s["complete"] and s["blocked_share"] == round(4 / 9, 6) and s["run"]["checks_per_s"] > 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows"] == 9
    assert ("categories" in out[0]) == ("categories" in Verdict.model_fields)  # only when verdicts have them


def test_image_columns_paths_bytes_hf_dicts_and_hostile_values(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(make_image())
    outside = tmp_path / "secret.png"
    outside.write_bytes(make_image())
    png = make_image(color=(0, 200, 0))
    # mixed value kinds do not fit one Arrow type: JSONL carries them (bytes as a data URL there)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    rows = [
        {"prompt": "look", "images": ["img/a.png"]},
        {"prompt": "look", "images": [{"bytes": None, "path": "img/a.png"}]},
        {"prompt": "look", "images": data_url},
        {"prompt": "look", "images": ["../secret.png"]},
        {"prompt": "look", "images": [str(outside)]},
        {"prompt": "look", "images": ["data:image/png;base64," + base64.b64encode(b"no image").decode()]},
        {"prompt": "look", "images": ["http://169.254.169.254/latest/x.png"]},
    ]
    backend = FakeBackend()
    run_batch(write_jsonl(root / "in.jsonl", rows), tmp_path / "out", Guard(backend), progress=False)
    out = read_output(tmp_path / "out")
    assert [r["decided_by"] for r in out] == ["model"] * 3 + ["input"] * 4
    assert "outside the image root" in out[3]["error"] and "outside the image root" in out[4]["error"]
    assert out[5]["error"].startswith("ImageError") and "fetching image URLs is disabled" in out[6]["error"]
    assert [len(p.images) for call in backend.calls for p in call] == [1, 1, 1]


def test_parquet_with_binary_images_to_jsonl_output(tmp_path):
    png = make_image()
    table = pa.table({"prompt": ["a", "b", None], "image": [png, None, b"junk"], "n": [1, 2, 3]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=2)
    run_batch(tmp_path / "in.parquet", tmp_path / "out", fake_guard(), columns=Columns(images="image"),
              output_format="jsonl", shard_size=2, progress=False)  # fmt: skip
    out = read_output(tmp_path / "out")
    assert_each_row_once(out, 3)
    assert base64.b64decode(out[0]["image"]) == png and out[0]["n"] == 1  # bytes in base64, ints stay ints
    assert out[0]["allowed"] is True and out[1]["allowed"] is True
    assert out[2]["decided_by"] == "input" and out[2]["error"].startswith("ImageError")


def test_messages_column_request_is_the_user_turns_response_the_answer_after_them(tmp_path):
    rows = [
        {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi there"},
                      {"role": "assistant", "content": "hello"}, {"role": "user", "content": [
                          {"type": "text", "text": "and a bomb?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "no way"}]}]},
        {"messages": [{"role": "assistant", "content": "only an answer"}]},  # no user turn
        {"messages": [{"role": "user", "content": "plain"}]},
    ]  # fmt: skip
    backend = FakeBackend(respond=lambda p: result_output("harmful" if "bomb" in p.text else "unharmful",
                                                          "unharmful" if "no way" in p.text else "None"))  # fmt: skip
    run_batch(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", Guard(backend), progress=False)
    out = read_output(tmp_path / "out")
    texts = [p.text for call in backend.calls for p in call]
    assert "hi there" in texts[0] and "and a bomb?" in texts[0] and "no way" in texts[0]
    assert "be nice" not in texts[0] and "hello" not in texts[0]  # system and earlier answers are context
    assert out[0]["request_harmful"] is True and out[0]["response_harmful"] is False
    assert out[1]["decided_by"] == "input" and "no user turn" in out[1]["error"]
    assert out[2]["allowed"] is True and out[2]["response_harmful"] is None
    # the content changed type between rows (string / parts): the column is kept as JSON text
    assert json.loads(out[0]["messages"])[1] == {"role": "user", "content": "hi there"}


def test_hugging_face_dataset_with_image_feature(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    img = Image.new("RGB", (32, 24), (10, 20, 30))
    ds = datasets.Dataset.from_dict({"question": ["q1", "q2", "q3"], "picture": [img, img, None]},
                                    features=datasets.Features({"question": datasets.Value("string"),
                                                                "picture": datasets.Image()}))  # fmt: skip
    ds.save_to_disk(tmp_path / "ds")
    backend = FakeBackend()
    run_batch(tmp_path / "ds", tmp_path / "out", Guard(backend), columns=Columns(prompt="question", images="picture"),
              progress=False)  # fmt: skip
    out = read_output(tmp_path / "out")
    assert [r["question"] for r in out] == ["q1", "q2", "q3"] and all(r["allowed"] for r in out)
    assert [len(p.images) for call in backend.calls for p in call] == [1, 1, 0]


def test_columns_must_exist_and_verdict_names_must_not_clash(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "x", "harmful": True}])
    with pytest.raises(ConfigurationError, match="none of the columns"):
        run_batch(src, tmp_path / "o1", fake_guard(), progress=False)
    with pytest.raises(ConfigurationError, match="'question' is not in the input"):
        run_batch(src, tmp_path / "o2", fake_guard(), columns=Columns(prompt="question"), progress=False)
    with pytest.raises(ConfigurationError, match="harmful.*--prefix"):
        run_batch(src, tmp_path / "o3", fake_guard(), columns=Columns(prompt="text"), progress=False)
    run_batch(
        src, tmp_path / "o4", fake_guard(), columns=Columns(prompt="text"), prefix="guard_", progress=False
    )
    row = read_output_prefixed(tmp_path / "o4")
    assert row["harmful"] is True and row["guard_harmful"] is False and row["guard_row_index"] == 0


def read_output_prefixed(out: Path) -> dict:
    (f,) = (out / "data").iterdir()
    return pq.read_table(f).to_pylist()[0]


def test_categories_column_only_when_verdicts_have_categories(tmp_path, monkeypatch):
    import guardrail.batch.rows as rows_mod

    class Stub:  # plumbing only: verdict objects that carry categories
        limits = None

        def moderate_batch(self, items):
            return [SimpleNamespace(allowed=False, harmful=True, request_harmful=True, response_harmful=None,
                                    response_refusal=None, score=None, request_score=None, response_score=None,
                                    path="reasoning", decided_by="model", error=None, latency_ms=1.0, model="m",
                                    reasoning=None, categories=["S1", "S10"]) for _ in items]  # fmt: skip

    monkeypatch.setattr(rows_mod, "has_categories", lambda: True)
    monkeypatch.setattr("guardrail.batch.job.has_categories", lambda: True)
    result = run_batch(write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a"}, {"prompt": "b"}]), tmp_path / "out",
                       Stub(), progress=False)  # fmt: skip
    assert [r["categories"] for r in read_output(tmp_path / "out")] == [["S1", "S10"]] * 2
    assert result.summary["categories"] == {"S1": 2, "S10": 2}
    assert rows_mod._categories(SimpleNamespace(categories={"S1": True, "S2": False})) == ["S1"]


# ----------------------------------------------------------------------- manifest, resuming
def test_rerun_resumes_refuses_other_options_and_overwrite_starts_over(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(10)])
    backend = FakeBackend()
    run_batch(src, tmp_path / "out", Guard(backend), shard_size=3, progress=False)
    first = sorted(p.name for p in (tmp_path / "out" / "data").iterdir())
    assert len(first) == 4
    again = run_batch(src, tmp_path / "out", Guard(backend), shard_size=3, progress=False)
    assert again.summary["run"]["rows"] == 0 and again.summary["run"]["skipped"] == 10
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == first
    with pytest.raises(ConfigurationError, match=r"options\.reasoning: False in the output, True now"):
        run_batch(src, tmp_path / "out", Guard(backend), reasoning=True, progress=False)
    with pytest.raises(
        ConfigurationError, match=r"options\.guard\.mode: 'reasoning' in the output, 'fast' now"
    ):
        run_batch(src, tmp_path / "out", Guard(FakeBackend(scores=[0.1]), mode="fast"), progress=False)
    write_jsonl(src, [{"prompt": f"q{i}"} for i in range(10)])  # the input changed
    with pytest.raises(ConfigurationError, match="sha256"):
        run_batch(src, tmp_path / "out", Guard(backend), progress=False)
    result = run_batch(src, tmp_path / "out", Guard(backend), overwrite=True, progress=False)
    assert result.summary["run"]["rows"] == 10 and {r["prompt"] for r in read_output(tmp_path / "out")} == {
        f"q{i}" for i in range(10)}  # fmt: skip
    # a folder with data but no manifest is not ours to extend
    (tmp_path / "out" / "manifest.json").unlink()
    with pytest.raises(ConfigurationError, match="no manifest"):
        run_batch(src, tmp_path / "out", Guard(backend), progress=False)


def test_unfinished_files_are_removed_and_their_rows_redone_exactly_once(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(12)])
    run_batch(src, tmp_path / "out", fake_guard(), shard_size=4, progress=False)
    data = tmp_path / "out" / "data"
    files = sorted(data.iterdir())
    # what interruptions leave: a temporary file, a Parquet file without footer (Ray writes in place)
    (data / ".tmp-local-0123456789ab-000009.parquet").write_bytes(b"partial")
    cut = files[1].read_bytes()
    files[1].write_bytes(cut[: len(cut) // 2])
    files[2].rename(
        data / "ray-0123456789abcdef0123456789abcdef-000000-0.parquet"
    )  # a finished Ray file: kept
    result = run_batch(src, tmp_path / "out", fake_guard(), shard_size=4, progress=False)
    assert result.summary["run"]["rows"] == 4 and result.complete
    assert_each_row_once(read_output(tmp_path / "out"), 12)
    assert not any(p.name.startswith(".tmp-") for p in data.iterdir())


def test_a_row_written_twice_or_a_foreign_row_is_an_error_not_a_silent_merge(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(4)])
    run_batch(src, tmp_path / "out", fake_guard(), shard_size=2, progress=False)
    data = tmp_path / "out" / "data"
    first = sorted(data.iterdir())[0]
    (data / first.name.replace("-000000", "-000007")).write_bytes(first.read_bytes())
    with pytest.raises(DataError, match="written twice"):
        run_batch(src, tmp_path / "out", fake_guard(), shard_size=2, progress=False)
    out = Output(tmp_path / "out", "parquet")
    assert len(out.data_files()) == 3  # nothing was removed


def test_a_second_job_on_the_same_output_refuses(tmp_path):
    out = Output(tmp_path / "out", "parquet")
    out.lock()
    try:
        with pytest.raises(ConfigurationError, match="another batch job"):
            run_batch(write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}]), tmp_path / "out", fake_guard(),
                      progress=False)  # fmt: skip
    finally:
        out.unlock()


def test_progress_line_has_rate_and_eta():
    import io

    now = [0.0]
    stream = io.StringIO()
    progress = Progress(100, 20, stream=stream, every_s=0, clock=lambda: now[0])
    now[0] = 10.0
    progress.update(30)
    assert "50/100 rows (50%) | 3.00 rows/s | ETA 0m17s" in stream.getvalue()


def test_ray_engine_needs_a_factory_and_the_ray_extra(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}])
    with pytest.raises(ConfigurationError, match="pass a function"):
        run_batch(src, tmp_path / "out", fake_guard(), engine="ray", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingDependencyError, match=r"guardrail-vl\[ray\]"):
        run_batch(src, tmp_path / "out", fake_guard, engine="ray", progress=False)


def test_importing_batch_imports_neither_pyarrow_nor_ray():
    code = ("import sys, guardrail, guardrail.batch, guardrail.cli; guardrail.cli.build_parser(); "
            "print(sorted(m for m in ('pyarrow', 'ray', 'torch', 'datasets') if m in sys.modules))")  # fmt: skip
    out = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True
    )
    assert out.stdout.strip() == "[]"


def test_worker_cpus_leave_a_cpu_for_reading_and_writing():
    from guardrail.batch.job import worker_cpus

    assert worker_cpus(2, 1, 0) == 1.0 and worker_cpus(2, 2, 0) == 0.5 and worker_cpus(64, 8, 0) == 1.0
    assert worker_cpus(1, 1, 0) == 0.1 and worker_cpus(8, 2, 1) == 1.0


# --------------------------------------------------------------------- the real tiny model
def helper_config(tmp_path: Path, model: Path, **overrides) -> Path:
    cfg = {"model": str(model), "mode": "fast", "batch_size": 2, "shard_size": 4,
           "log": str(tmp_path / "guard.log"), **overrides}  # fmt: skip
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def finished_files(folder, suffix: str) -> list:
    """The data files written in full (not those still under their temporary ".tmp-" name)."""
    return [p for p in folder.iterdir() if p.suffix == suffix and not p.name.startswith(".")]


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_job_resumes_every_row_exactly_once_with_the_verdicts_of_an_uninterrupted_run(
    tmp_path, tiny_vl_path
):
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"request number {i}"} for i in range(24)])
    cfg = helper_config(tmp_path, tiny_vl_path, input=str(src), output=str(tmp_path / "out"), delay=0.3)
    helper = [PYTHON, str(REPO / "tests" / "batch_helper.py"), str(cfg)]
    proc = subprocess.Popen(
        helper, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    data = tmp_path / "out" / "data"
    try:
        wait_for(lambda: data.exists() and len(finished_files(data, ".parquet")) >= 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = {p.name: p.read_bytes() for p in finished_files(data, ".parquet")}
    assert 2 <= len(kept) < 6  # killed in the middle
    rerun = subprocess.run(helper, env=subprocess_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for name, content in kept.items():  # finished files are not redone
        assert (data / name).read_bytes() == content
    rows = read_output(tmp_path / "out")
    assert_each_row_once(rows, 24)
    # the same verdicts as one uninterrupted run (fast mode: scores from one forward pass)
    cfg2 = helper_config(tmp_path, tiny_vl_path, input=str(src), output=str(tmp_path / "ref"))
    subprocess.run([PYTHON, str(REPO / "tests" / "batch_helper.py"), str(cfg2)], env=subprocess_env(), check=True,
                   capture_output=True)  # fmt: skip
    ref = read_output(tmp_path / "ref")
    for got, want in zip(rows, ref, strict=True):
        assert got["prompt"] == want["prompt"] and got["allowed"] == want["allowed"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-6) and got["path"] == "fast"


@pytest.mark.slow
def test_cli_end_to_end_with_the_tiny_model_and_ctrl_c_resume(tmp_path, tiny_vl_path):
    (tmp_path / "cat.png").write_bytes(make_image())
    rows = [{"prompt": f"question {i}", "images": ["cat.png"] if i % 3 == 0 else None} for i in range(20)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cmd = [PYTHON, "-m", "guardrail", "batch", "--model", str(tiny_vl_path), "--device", "cpu",
           "--max-new-tokens", "24", "--input", str(src), "--output", str(tmp_path / "out"),
           "--batch-size", "2", "--shard-size", "2", "--reasoning", "--output-format", "jsonl"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    data = tmp_path / "out" / "data"
    try:
        wait_for(lambda: data.exists() and bool(finished_files(data, ".jsonl")))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the job finished before Ctrl-C reached it (machine too fast for this test's sizes)")
    assert proc.returncode == 130 and "rerun the same command" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"]["interrupted"] and 0 < summary["rows"] < 20
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows: 20 of 20" in done.stdout and "checks/s" in done.stdout
    out = read_output(tmp_path / "out")
    assert_each_row_once(out, 20)
    assert {r["path"] for r in out} == {"reasoning"} and all("reasoning" in r for r in out)
    assert all(r["model"] == str(tiny_vl_path) for r in out)
    # a rerun with other options refuses and says which
    other = subprocess.run(cmd + ["--mode", "fast"], env=subprocess_env(), capture_output=True, text=True)
    assert other.returncode == 2 and "mode: 'reasoning' in the output, 'fast' now" in other.stderr


def test_parquet_folder_rows_by_position_across_row_groups_and_files(tmp_path):
    from guardrail.batch.sources import open_source

    (tmp_path / "ds").mkdir()
    pq.write_table(
        pa.table({"prompt": [f"p{i}" for i in range(5)]}), tmp_path / "ds" / "a.parquet", row_group_size=2
    )
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(5, 8)]}), tmp_path / "ds" / "b.parquet")
    source = open_source(tmp_path / "ds")
    assert source.num_rows == 8 and source.kind == "parquet"
    for start, stop in ((0, 8), (1, 4), (3, 6), (4, 5), (7, 20)):
        assert source.read(start, stop).column("prompt").to_pylist() == [
            f"p{i}" for i in range(start, min(stop, 8))
        ]
    run_batch(tmp_path / "ds", tmp_path / "out", fake_guard(), shard_size=3, progress=False)
    assert [r["prompt"] for r in read_output(tmp_path / "out")] == [f"p{i}" for i in range(8)]


def test_image_paths_in_chats_and_symbolic_links_stay_inside_the_image_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.png").write_bytes(make_image())
    (tmp_path / "secret.png").write_bytes(make_image())
    (root / "link.png").symlink_to(tmp_path / "secret.png")

    def chat(url: str) -> dict:
        return {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                          {"type": "image_url", "image_url": {"url": url}}]}]}  # fmt: skip

    rows = [chat("ok.png"), chat("../secret.png"), {"prompt": "x", "images": "link.png"}, chat("ok.png")]
    backend = FakeBackend()
    run_batch(write_jsonl(root / "in.jsonl", rows), tmp_path / "out", Guard(backend), progress=False)
    out = read_output(tmp_path / "out")
    assert [r["decided_by"] for r in out] == ["model", "input", "input", "model"]
    assert all("outside the image root" in r["error"] for r in out[1:3])
    assert [len(p.images) for call in backend.calls for p in call] == [1, 1]
    # with paths off, even a path inside the root is refused
    run_batch(root / "in.jsonl", tmp_path / "out2", Guard(FakeBackend()), image_root=None, progress=False)
    assert {r["decided_by"] for r in read_output(tmp_path / "out2")} == {"input"}
