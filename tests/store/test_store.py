from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from modelbonsai.store import LineageStore, MetricRecord, StoreError
from modelbonsai.store.migrations import SCHEMA_VERSION

from .helpers import record, store_at_version, writer


def test_open_creates_wal_database_with_schema_version(tmp_path: Path) -> None:
    s = LineageStore.open(tmp_path)
    assert (tmp_path / ".bonsai" / "lineage.sqlite").is_file()
    assert s.schema_version == SCHEMA_VERSION
    mode = (
        sqlite3.connect(tmp_path / ".bonsai" / "lineage.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    )
    assert mode == "wal"
    s.close()
    # reopening does not re-run migrations (would fail: tables exist)
    LineageStore.open(tmp_path).close()


def test_migration_from_older_version_and_refusal_of_newer(tmp_path: Path) -> None:
    db = tmp_path / ".bonsai" / "lineage.sqlite"
    c = store_at_version(tmp_path, 0)
    c.commit()
    c.close()
    s = LineageStore.open(tmp_path)
    assert s.schema_version == SCHEMA_VERSION
    assert s.list_models() == []
    s.close()
    c = sqlite3.connect(db)
    c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="newer"):
        LineageStore.open(tmp_path)


def test_migration_keeps_data_of_version_1(tmp_path: Path) -> None:
    c = store_at_version(tmp_path, 1)
    c.execute("INSERT INTO metrics (model_id, name, value) VALUES ('abc', 'accuracy', 0.5)")
    c.commit()
    c.close()
    s = LineageStore.open(tmp_path)
    assert s.schema_version == SCHEMA_VERSION
    [m] = s.metrics("abc")
    assert (m.name, m.value, m.detail) == ("accuracy", 0.5, "")
    s.close()


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".bonsai").mkdir()
    (tmp_path / ".bonsai" / "lineage.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable Bonsai lineage database"):
        LineageStore.open(tmp_path)


def test_add_get_children_metrics(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer(), metrics=[MetricRecord("accuracy", 0.9, headline=True)])
    child = store.add_model(record("prune-50", base.id), writer(b"y" * 10))
    assert [m.name for m in store.list_models()] == ["base", "prune-50"]
    assert store.get_model("prune-50").id == child.id
    assert store.get_model(child.id[:6]).name == "prune-50"
    assert store.get_model(child.id).params == {"k": 1}
    assert [c.id for c in store.children(base.id)] == [child.id]
    assert (store.artifact_path(child) / "tensors.bin").read_bytes() == b"y" * 10
    assert [(m.name, m.value, m.headline) for m in store.metrics(base.id)] == [("accuracy", 0.9, True)]
    store.put_metrics(
        child.id, [{"name": "accuracy", "value": 0.8}, MetricRecord("size", 10, "B", False, detail="files")]
    )
    store.put_metrics(child.id, [{"name": "accuracy", "value": 0.85}])
    got = {m.name: m for m in store.metrics(child.id)}
    assert (
        got["accuracy"].value == 0.85
        and got["size"].unit == "B"
        and got["size"].detail == "files"
        and not got["size"].higher_is_better
    )
    assert store.find_by_fingerprint("fp-prune-50").id == child.id
    assert store.find_by_fingerprint("nope") is None
    with pytest.raises(StoreError, match="no model 'ghost'"):
        store.get_model("ghost")


def test_root_of_walks_up_to_the_base(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer())
    child = store.add_model(record("a", base.id), writer())
    grandchild = store.add_model(record("b", child.id), writer())
    assert store.root_of(grandchild).id == base.id
    assert store.root_of(base).id == base.id


def test_name_resolves_to_newest(store: LineageStore) -> None:
    store.add_model(record("a", fp="1"), writer())
    second = store.add_model(record("a", fp="2"), writer())
    assert store.get_model("a").id == second.id
    assert len(store.list_models()) == 2


def test_unknown_parent_is_refused_and_leaves_nothing(store: LineageStore) -> None:
    with pytest.raises(StoreError, match="parent"):
        store.add_model(record("orphan", "deadbeef0000"), writer())
    assert store.list_models() == []
    assert list((store.root / "artifacts").iterdir()) == []
    assert [p for p in (store.root / "tmp").iterdir()] == []


def test_failing_writer_leaves_nothing(store: LineageStore) -> None:
    def bad(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"1")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.add_model(record("x"), bad)
    assert store.list_models() == []
    assert list((store.root / "artifacts").iterdir()) == []
    assert list((store.root / "tmp").iterdir()) == []


def test_delete_refuses_with_children_and_recursive_removes(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer())
    a = store.add_model(record("a", base.id), writer())
    b = store.add_model(record("b", a.id), writer())
    store.cache_put("weights", {"models": [base.id, b.id]}, b"cached")
    with pytest.raises(StoreError, match="derived"):
        store.delete_model(a.id)
    gone = store.delete_model(a.id, recursive=True)
    assert {m.id for m in gone} == {a.id, b.id}
    assert [m.name for m in store.list_models()] == ["base"]
    assert not store.artifact_path(a).exists() and not store.artifact_path(b).exists()
    assert store.metrics(b.id) == []
    assert store.cache_get("weights", {"models": [base.id, b.id]}) is None
    store.delete_model("base")
    assert store.list_models() == []


def test_replace_reparents_children(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer())
    old = store.add_model(record("a", base.id), writer())
    kid = store.add_model(record("b", old.id), writer())
    new = store.add_model(record("a", base.id), writer(), replaces=old.id)
    assert store.get_model(kid.id).parent_id == new.id
    assert not store.artifact_path(old).exists()
    assert [m.name for m in store.list_models()] == ["base", "b", "a"]


def test_broken_artifacts_are_shown_with_reason(store: LineageStore) -> None:
    ok = store.add_model(record("ok"), writer())
    gone = store.add_model(record("gone"), writer())
    corrupt = store.add_model(record("corrupt"), writer())
    lacking = store.add_model(record("lacking"), writer())

    def sized(folder: Path) -> None:
        (folder / "t.safetensors").write_bytes(b"0" * 64)
        (folder / "manifest.json").write_text('{"tensors_file": "t.safetensors", "tensors_bytes": 64}')

    truncated = store.add_model(record("truncated"), sized)
    assert store.get_model("truncated").status == "ok"
    (store.artifact_path(truncated) / "t.safetensors").write_bytes(b"0" * 10)
    import shutil

    shutil.rmtree(store.artifact_path(gone))
    (store.artifact_path(corrupt) / "manifest.json").write_text("{not json")
    (store.artifact_path(lacking) / "tensors.bin").unlink()
    status = {m.name: (m.status, m.status_reason) for m in store.list_models()}
    assert status["ok"] == ("ok", "")
    assert status["gone"][0] == "broken" and "missing" in status["gone"][1]
    assert status["corrupt"][0] == "broken" and "unreadable" in status["corrupt"][1]
    assert status["lacking"][0] == "broken" and "tensors.bin" in status["lacking"][1]
    assert status["truncated"][0] == "broken" and "truncated" in status["truncated"][1]
    assert store.get_model("gone").status == "broken"
    assert store.find_by_fingerprint("fp-gone") is None
    assert store.find_by_fingerprint("fp-gone", include_broken=True).id == gone.id
    assert store.find_by_fingerprint("fp-ok").id == ok.id
    # a fresh open does not "repair" by deleting the broken rows
    again = LineageStore.open(store.workspace)
    assert len(again.list_models()) == 5
    again.close()


def test_runs(store: LineageStore) -> None:
    run = store.start_run("exp.bonsai.yaml", ["a", "b"])
    assert store.list_runs()[0].status == "running"
    store.finish_run(run.id, "failed", "1 variant failed", {"b": "op prune: boom"})
    got = store.get_run(run.id)
    assert got.status == "failed" and got.failures == {"b": "op prune: boom"} and got.finished
    with pytest.raises(ValueError):
        store.finish_run(run.id, "running")


def test_run_of_dead_process_reads_as_interrupted(tmp_path: Path) -> None:
    code = f"from modelbonsai.store import LineageStore; LineageStore.open({str(tmp_path)!r}).start_run('e', ['v'])"
    subprocess.run([sys.executable, "-c", code], check=True)
    s = LineageStore.open(tmp_path)
    run = s.list_runs()[0]
    assert run.status == "failed" and "interrupted" in run.message
    s.close()


def test_cache_roundtrip_and_canonical_key(store: LineageStore) -> None:
    assert store.cache_get("weights", {"a": 1, "b": [1, 2]}) is None
    store.cache_put("weights", {"a": 1, "b": [1, 2]}, b"\x00payload")
    assert store.cache_get("weights", {"b": [1, 2], "a": 1}) == b"\x00payload"
    assert store.cache_get("activations", {"a": 1, "b": [1, 2]}) is None
    store.cache_put("weights", {"a": 1, "b": [1, 2]}, b"new")
    assert store.cache_get("weights", {"a": 1, "b": [1, 2]}) == b"new"
    other = LineageStore.open(store.workspace)
    assert other.cache_get("weights", {"a": 1, "b": [1, 2]}) == b"new"
    other.close()
    with pytest.raises(ValueError):
        store.cache_put("../evil", {}, b"")
    assert store.cache_clear("weights") == 1
    assert store.cache_get("weights", {"a": 1, "b": [1, 2]}) is None


def test_reader_works_while_writer_holds_a_transaction(tmp_path: Path) -> None:
    writer_store = LineageStore.open(tmp_path)
    base = writer_store.add_model(record("base"), writer())
    reader = LineageStore.open(tmp_path)
    in_tx, release = threading.Event(), threading.Event()

    def slow_writer(folder: Path) -> None:
        writer()(folder)

    def hold() -> None:
        with writer_store._tx() as c:  # a long write transaction, as during a big commit
            c.execute("UPDATE models SET seed = 7 WHERE id = ?", (base.id,))
            in_tx.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert in_tx.wait(10)
    t0 = time.monotonic()
    assert [m.name for m in reader.list_models()] == ["base"]
    assert reader.get_model("base").seed == 0  # sees the last committed state
    assert time.monotonic() - t0 < 2
    release.set()
    t.join()
    assert reader.get_model("base").seed == 7
    # and a second writer process waits for the first instead of failing
    writer_store.add_model(record("a", base.id), slow_writer)
    assert len(reader.list_models()) == 2
    reader.close()
    writer_store.close()


def test_open_sweeps_leftovers_of_dead_writers_only(tmp_path: Path) -> None:
    s = LineageStore.open(tmp_path)
    (s.root / "tmp" / "aaaaaaaaaaaa").mkdir()
    (s.root / "tmp" / "aaaaaaaaaaaa" / "x").write_bytes(b"1")
    (s.root / "artifacts" / "bbbbbbbbbbbb").mkdir()  # renamed but never committed
    # a live writer (lock held) keeps its temp folder
    from modelbonsai.store.fsio import WriterLock

    live = WriterLock(s.root / "tmp" / "cccccccccccc.lock")
    assert live.try_acquire()
    (s.root / "tmp" / "cccccccccccc").mkdir()
    s.close()
    s = LineageStore.open(tmp_path)
    assert not (s.root / "tmp" / "aaaaaaaaaaaa").exists()
    assert not (s.root / "artifacts" / "bbbbbbbbbbbb").exists()
    assert (s.root / "tmp" / "cccccccccccc").exists()
    live.release()
    s.close()


_ADDER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from modelbonsai.store import LineageStore, ModelRecord

    store = LineageStore.open(Path(sys.argv[1]))
    log = open(sys.argv[2], "a")
    i = 0
    while True:
        i += 1
        name = f"m{sys.argv[3]}-{i}"
        parents = store.list_models()
        parent = parents[-1].id if parents and i % 3 else None
        payload = bytes([i % 251]) * (20000 + 7919 * (i % 13))

        def write(folder, payload=payload):
            (folder / "tensors.bin").write_bytes(payload)
            (folder / "manifest.json").write_text(json.dumps({"files": ["tensors.bin"], "n": len(payload)}))

        rec = store.add_model(ModelRecord(name=name, parent_id=parent, op="t", fingerprint=name), write,
                              metrics=[{"name": "size", "value": len(payload)}])
        log.write(rec.id + "\\n")
        log.flush()
    """
)


def test_crash_consistency_under_sigkill(tmp_path: Path) -> None:
    import random

    rng = random.Random(1234)
    script = tmp_path / "adder.py"
    script.write_text(_ADDER)
    ws = tmp_path / "ws"
    ws.mkdir()
    log = tmp_path / "completed.txt"
    log.touch()
    rounds = 25
    t_start = time.monotonic()
    for r in range(rounds):
        proc = subprocess.Popen([sys.executable, str(script), str(ws), str(log), str(r)])
        # Interpreter + import takes a while; kill anywhere from during startup to mid-stream.
        time.sleep(rng.uniform(0.15, 0.6))
        proc.kill()
        proc.wait()
        completed = set(log.read_text().split())
        s = LineageStore.open(ws)
        models = s.list_models()
        listed = {m.id for m in models}
        # Every logged model is listed; at most one more (committed, killed before logging it).
        assert completed <= listed, f"round {r}: completed models lost"
        assert len(listed - completed) <= 1
        for m in models:
            assert m.status == "ok", (r, m.status_reason)
            folder = s.artifact_path(m)
            size = {x.name: x.value for x in s.metrics(m.id)}["size"]
            assert (folder / "tensors.bin").stat().st_size == size
            assert m.parent_id is None or m.parent_id in listed
        assert {p.name for p in (s.root / "artifacts").iterdir()} == listed
        assert [p for p in (s.root / "tmp").iterdir()] == []
        s.close()
        log.write_text("\n".join(sorted(listed)) + "\n")
    assert len(listed) > rounds // 2, "the writer hardly ever got to write: test is not exercising much"
    assert time.monotonic() - t_start < 60


def test_reader_in_another_process_while_a_writer_process_holds_the_lock(tmp_path: Path) -> None:
    s = LineageStore.open(tmp_path)
    s.add_model(record("base"), writer())
    holder = textwrap.dedent(
        f"""
        import sys, time
        from modelbonsai.store import LineageStore
        s = LineageStore.open({str(tmp_path)!r})
        with s._tx() as c:
            c.execute("UPDATE models SET seed = 9")
            print("locked", flush=True)
            time.sleep(3)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        reader = LineageStore.open(tmp_path)  # opening (migrate check, sweep) must not block either
        assert [m.seed for m in reader.list_models()] == [0]
        assert time.monotonic() - t0 < 2
        reader.close()
    finally:
        proc.wait(10)
    assert [m.seed for m in s.list_models()] == [9]
    s.close()


def test_nan_and_inf_metrics_are_kept(store: LineageStore) -> None:
    # A collapsed model's perplexity can be NaN or inf: the store keeps it, it does not fail.
    base = store.add_model(
        record("base"),
        writer(),
        metrics=[
            MetricRecord("perplexity", float("nan"), higher_is_better=False),
            MetricRecord("loss", float("inf")),
        ],
    )
    got = {m.name: m.value for m in store.metrics(base.id)}
    assert math.isnan(got["perplexity"]) and got["loss"] == float("inf")
