"""The job queue and the result store on their own (no server): states, positions, failures,
cancellation, pages, the file channel's atomic writes and its clean-up."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from modelbonsai.lsp.jobs import Job, JobCancelled, JobContext, JobQueue
from modelbonsai.lsp.results import ResultNotFound, ResultStore


def _wait(job: Job, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.finished, job.info()


def test_queue_runs_one_job_per_device_with_positions_and_survives_failures() -> None:
    seen: list[dict] = []
    q = JobQueue(on_change=lambda j: seen.append(dict(j.info())))
    gate = threading.Event()
    running: list[str] = []

    def blocker(ctx: JobContext) -> str:
        running.append(ctx.job.id)
        gate.wait(5)
        return "first"

    def boom(ctx: JobContext) -> None:
        raise ValueError("op prune.magnitude, parameter 'sparsity': must be < 1")

    a = q.submit("run", "A", blocker, device="cpu")
    b = q.submit("run", "B", boom, device="cpu")
    c = q.submit("compare", "C", lambda ctx: 42, device="cpu")
    other = q.submit("run", "D", lambda ctx: "elsewhere", device="cuda:1")  # its own worker
    _wait(other)
    assert other.state == "done" and a.state == "running"
    assert (b.state, b.position, c.position) == ("queued", 1, 2)
    assert b.info()["position"] == 1 and "position" not in a.info()
    gate.set()
    for j in (a, b, c):
        _wait(j)
    assert (a.state, a.result) == ("done", "first")
    assert b.state == "failed" and "must be < 1" in (b.message or "")
    assert (c.state, c.result) == ("done", 42)
    states = [s["state"] for s in seen if s["id"] == c.id]
    assert states[0] == "queued" and states[-1] == "done" and "running" in states
    assert any(s["id"] == c.id and s.get("position") == 1 for s in seen), "position moved up as B started"
    q.shutdown()


def test_cancel_running_and_queued_jobs() -> None:
    q = JobQueue()
    steps: list[int] = []

    def slow(ctx: JobContext) -> None:
        for i in range(200):
            ctx.check_cancelled()
            ctx.progress(i / 200, f"step {i}")
            steps.append(i)
            time.sleep(0.01)

    a = q.submit("run", "A", slow)
    b = q.submit("run", "B", slow)
    while not steps:
        time.sleep(0.01)
    assert q.cancel(b.id) and b.state == "cancelled"
    t0 = time.monotonic()
    assert q.cancel(a.id)
    _wait(a, 2)
    assert a.state == "cancelled" and time.monotonic() - t0 < 0.5
    assert not q.cancel(a.id) and not q.cancel("nope")
    with pytest.raises(JobCancelled):
        b.future.result(0)
    q.shutdown()


def test_result_pages_inline_file_and_cleanup(tmp_path: Path) -> None:
    rs = ResultStore(tmp_path / "storage", inline_limit=1000, max_age_s=60)
    small, big = b"x" * 10, os.urandom(5000)
    rid = rs.put([small, big])
    r0 = rs.ref(rid, 0)
    assert base64.b64decode(r0["data"]) == small and r0["pages"] == 2 and r0["done"]
    r1 = rs.ref(rid, 1)
    assert "data" not in r1
    f = Path(r1["file"]["path"])
    assert f.read_bytes() == big and r1["file"]["size"] == 5000
    assert r1["file"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert [p.name for p in f.parent.iterdir()] == [f.name], "no temporary files left"
    assert rs.ref(rid, 2) == {"resultId": rid, "page": 2, "pages": 2, "done": True}  # past the end
    with pytest.raises(ResultNotFound):
        rs.ref("unknown", 0)
    # sweep removes files older than max_age_s (also those of earlier servers), keeps new ones
    old = f.parent / "old-0.msgpack"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert rs.sweep() == 1 and not old.exists() and f.exists()
    rs.close()
    assert not f.exists(), "shutdown deletes the files this server wrote"


def test_streaming_result_waits_for_pages(tmp_path: Path) -> None:
    rs = ResultStore(None)
    rid = rs.new()
    fut = rs.wait_page(rid, 1)
    rs.add_page(rid, b"a")
    assert not fut.done()
    assert rs.ref(rid, 0)["done"] is False
    threading.Timer(0.1, lambda: (rs.add_page(rid, b"b"), rs.finish(rid))).start()
    ref = rs.ref(rid, 1, wait_s=5)
    assert base64.b64decode(ref["data"]) == b"b" and fut.done()
    rid2 = rs.new()
    rs.finish(rid2, error="op failed")
    with pytest.raises(RuntimeError, match="op failed"):
        rs.ref(rid2, 0)
    # without a storage folder a too-big page is refused with a clear message
    small = ResultStore(None, inline_limit=4)
    with pytest.raises(RuntimeError, match="storagePath"):
        small.ref(small.put([b"123456"]), 0)


def test_result_names_its_job_and_ends_cancelled(tmp_path: Path) -> None:
    from modelbonsai.lsp.jobs import JobCancelled

    rs = ResultStore(None)
    rid = rs.new()
    assert "jobId" not in rs.ref(rid, 0, wait_s=0)  # no job (yet): the field is left out
    rs.attach_job(rid, "j7")
    rs.add_page(rid, b"first")
    waiting = rs.wait_page(rid, 1)
    rs.finish(rid, error="cancelled", cancelled=True)
    assert waiting.done(), "a page wait ends when the result is cancelled"
    first = rs.ref(rid, 0, wait_s=0)
    assert first["jobId"] == "j7" and base64.b64decode(first["data"]) == b"first"  # made pages stay
    t0 = time.monotonic()
    with pytest.raises(JobCancelled):
        rs.ref(rid, 1, wait_s=30)
    assert time.monotonic() - t0 < 0.5


def test_lineage_cache_incremental_and_full_refresh(tmp_path: Path) -> None:
    import json
    import shutil

    from modelbonsai.lsp.lineage import LineageCache
    from modelbonsai.store import LineageStore, ModelRecord
    from modelbonsai.tasks.base import Metric

    store = LineageStore.open(tmp_path)

    def write(folder: Path) -> None:
        (folder / "manifest.json").write_text('{"tensors": {}}')

    def add(name: str, parent: str | None, acc: float) -> str:
        rec = ModelRecord(name=name, parent_id=parent, op=None if parent is None else "prune.magnitude")
        return store.add_model(rec, write, metrics=[Metric("accuracy", acc, "", True, True)]).id

    root = add("base", None, 0.9)
    a = add("a", root, 0.8)
    cache = LineageCache(lambda folder: store)
    first = cache.get(tmp_path)
    assert [m["name"] for m in first.models] == ["base", "a"]
    assert json.loads(first.data) == {
        "folder": str(tmp_path),
        "models": first.models,
        "metrics": first.metrics,
    }
    assert first.metrics == {
        "accuracy": {"name": "accuracy", "unit": "", "higherIsBetter": True, "headline": True}
    }
    assert cache.peek(tmp_path) is first, "nothing changed: answered from the cache"

    b = add("b", a, 0.7)
    assert cache.peek(tmp_path) is None, "the store changed and recomputing is cheap: recompute"
    second = cache.get(tmp_path)
    assert [m["name"] for m in second.models] == ["base", "a", "b"]
    assert second.parts[root] is first.parts[root], "unchanged models are not re-read"
    assert second.models[2]["parent"] == a and second.models[2]["metrics"] == {"accuracy": 0.7}
    from modelbonsai.lsp.lineage import MetricTable, metric_values
    from modelbonsai.store import MetricRecord

    # JSON cannot carry NaN: left out
    assert metric_values([MetricRecord("accuracy", float("nan"))], MetricTable()) == {}

    # a re-evaluation keeps id and parent, changes metrics: the incremental refresh re-reads it
    store.replace_evaluation(
        a,
        "task-v2",
        [Metric("accuracy", 0.75, "", True, True)],
        file_name="outputs.safetensors",
        file_writer=None,
    )
    third = cache.get(tmp_path)
    assert third.models[1]["metrics"] == {"accuracy": 0.75} and third.parts[root] is second.parts[root]

    store.delete_model(b)
    assert [m["name"] for m in cache.get(tmp_path).models] == ["base", "a"]
    shutil.rmtree(store.artifact_path(a))  # by hand: only a full re-read notices
    full = cache.refresh(tmp_path, full=True)
    assert {m["name"]: m["status"] for m in full.models} == {"base": "ok", "a": "broken"}
    assert "missing" in full.models[1]["statusReason"]
    cache.close()


def test_lineage_marks_models_a_job_is_remaking_as_running(tmp_path: Path) -> None:
    import json

    from modelbonsai.lsp.lineage import LineageCache
    from modelbonsai.store import LineageStore, ModelRecord

    store = LineageStore.open(tmp_path)

    def write(folder: Path) -> None:
        (folder / "manifest.json").write_text('{"tensors": {}}')

    exp = str(tmp_path / "e.bonsai.yaml")
    root = store.add_model(ModelRecord(name="base", experiment_file=exp, variant="base"), write).id
    store.add_model(
        ModelRecord(name="a", parent_id=root, op="prune.magnitude", experiment_file=exp, variant="a"), write
    )
    cache = LineageCache(lambda folder: store)
    entry = cache.get(tmp_path)
    assert entry.with_running(tmp_path, set()) is entry.data
    assert entry.with_running(tmp_path, {(exp, "elsewhere")}) is entry.data
    marked = entry.with_running(tmp_path, {(exp, "a"), ("other.bonsai.yaml", "a")})
    got = json.loads(marked)
    assert [(m["name"], m["status"]) for m in got["models"]] == [("base", "ok"), ("a", "running")]
    assert got["models"][0] == entry.models[0] and {**got["models"][1], "status": "ok"} == entry.models[1]
    assert entry.with_running(tmp_path, {(exp, "a")}) is marked, "kept while the same job runs"
    assert json.loads(entry.data)["models"][1]["status"] == "ok", "the cached answer is untouched"
    cache.close()
