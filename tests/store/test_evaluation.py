"""The evaluation fingerprint column (migration 4) and swapping a stored model's evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbonsai.store import LineageStore, MetricRecord, StoreError
from modelbonsai.store.migrations import SCHEMA_VERSION

from .helpers import record, store_at_version, writer


def test_migration_from_version_3_keeps_every_row_with_an_unknown_evaluation(tmp_path: Path) -> None:
    c = store_at_version(tmp_path, 3)
    for i, (mid, parent) in enumerate([("aaaa01", None), ("bbbb02", "aaaa01"), ("cccc03", "bbbb02")]):
        c.execute(
            "INSERT INTO models (id, name, parent_id, artifact, created, fingerprint, complete) "
            "VALUES (?, ?, ?, ?, ?, ?, 1)",
            (mid, f"m{i}", parent, f"artifacts/{mid}", float(i), f"fp{i}"),
        )
        c.execute(
            "INSERT INTO metrics (model_id, name, value) VALUES (?, 'accuracy', ?)", (mid, 0.5 + i / 10)
        )
        folder = tmp_path / ".bonsai" / "artifacts" / mid
        folder.mkdir(parents=True)
        writer()(folder)
    c.commit()
    c.close()
    s = LineageStore.open(tmp_path)
    assert s.schema_version == SCHEMA_VERSION >= 4
    models = s.list_models()
    assert [(m.id, m.name, m.parent_id, m.fingerprint, m.eval_fingerprint, m.status) for m in models] == [
        ("aaaa01", "m0", None, "fp0", None, "ok"),
        ("bbbb02", "m1", "aaaa01", "fp1", None, "ok"),
        ("cccc03", "m2", "bbbb02", "fp2", None, "ok"),
    ]
    assert [s.metrics(m.id)[0].value for m in models] == [0.5, 0.6, 0.7]
    s.close()


def test_added_model_keeps_its_evaluation_fingerprint(store: LineageStore) -> None:
    rec = record("base")
    rec.eval_fingerprint = "task:all"
    added = store.add_model(rec, writer())
    assert store.get_model(added.id).eval_fingerprint == "task:all"
    assert store.add_model(record("other"), writer()).eval_fingerprint is None


def test_replace_evaluation_swaps_outputs_metrics_and_fingerprint_only(store: LineageStore) -> None:
    base = store.add_model(
        record("base"), writer(), metrics=[MetricRecord("accuracy", 0.9), MetricRecord("old", 1)]
    )
    child = store.add_model(record("child", base.id), writer())
    (store.artifact_path(base) / "outputs.bin").write_bytes(b"old outputs")
    new = store.replace_evaluation(
        base.id,
        "task2:12",
        [MetricRecord("accuracy", 0.7)],
        file_name="outputs.bin",
        file_writer=lambda p: p.write_bytes(b"new outputs"),
    )
    assert new.id == base.id and new.eval_fingerprint == "task2:12"
    got = store.get_model(base.id)
    assert got.eval_fingerprint == "task2:12" and got.fingerprint == base.fingerprint
    assert [(m.name, m.value) for m in store.metrics(base.id)] == [("accuracy", 0.7)]
    assert (store.artifact_path(base) / "outputs.bin").read_bytes() == b"new outputs"
    assert store.children(base.id)[0].id == child.id
    assert not list((store.root / "tmp").iterdir())
    # without a task there are no outputs: the old file goes
    store.replace_evaluation(base.id, "none:all", [], file_name="outputs.bin", file_writer=None)
    assert not (store.artifact_path(base) / "outputs.bin").exists() and store.metrics(base.id) == []


def test_failed_replace_evaluation_changes_nothing(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer(), metrics=[MetricRecord("accuracy", 0.9)])
    (store.artifact_path(base) / "outputs.bin").write_bytes(b"old outputs")

    def half(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.replace_evaluation(
            base.id, "x:all", [MetricRecord("accuracy", 0.1)], file_name="outputs.bin", file_writer=half
        )
    assert (store.artifact_path(base) / "outputs.bin").read_bytes() == b"old outputs"
    # a metric that cannot be stored: the transaction rolls back, the outputs file stays
    with pytest.raises(ValueError, match="numeric"):
        store.replace_evaluation(
            base.id, "x:all", [{"name": "bad", "value": "text"}], file_name="outputs.bin", file_writer=None
        )
    got = store.get_model(base.id)
    assert got.eval_fingerprint is None
    assert [(m.name, m.value) for m in store.metrics(base.id)] == [("accuracy", 0.9)]
    assert (store.artifact_path(base) / "outputs.bin").read_bytes() == b"old outputs"
    assert not list((store.root / "tmp").iterdir())
    with pytest.raises(StoreError, match="no model"):
        store.replace_evaluation("ghost", "x:all", [], file_name="outputs.bin", file_writer=None)
