"""One model per fingerprint in the store: claims, other names, and the merge of old duplicates."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from modelbonsai.store import LineageStore

from .helpers import record, store_at_version, writer


def test_a_claim_is_reused_waited_for_or_taken_over(store: LineageStore) -> None:
    first = store.claim("fp-x", "run-1")
    assert first.ours
    # another run (this process, so alive) holds it: wait
    held = store.claim("fp-x", "run-2")
    assert not held.ours and held.model_id is None and "run-1" in (held.holder or "")
    # the holder stores the model: the commit releases the claim, and others reuse the model
    rec = store.add_model(record("x", fp="fp-x"), writer())
    assert store._query("SELECT count(*) FROM claims") == [(0,)]
    assert store.claim("fp-x", "run-2").model_id == rec.id
    # forced (no reuse): ours even though a model exists
    assert store.claim("fp-x", "run-2", reuse=False).ours
    store.release_claims("run-2")
    assert store._query("SELECT count(*) FROM claims") == [(0,)]


def test_the_claim_of_a_process_that_is_gone_is_taken_over(store: LineageStore) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store._conn.execute(
        "INSERT INTO claims VALUES ('fp-y', 'run-dead', ?, ?, ?)",
        (dead.pid, socket.gethostname(), time.time()),
    )
    assert store.claim("fp-y", "run-3").ours
    # another host's claim is trusted until it is old
    store._conn.execute("INSERT INTO claims VALUES ('fp-z', 'run-far', 1, 'elsewhere', ?)", (time.time(),))
    assert not store.claim("fp-z", "run-3").ours
    store._conn.execute("UPDATE claims SET created = 0 WHERE fingerprint = 'fp-z'")
    assert store.claim("fp-z", "run-3").ours


def test_a_second_model_of_one_fingerprint_is_not_stored_and_its_name_resolves(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer())
    b = store.add_model(record("B", parent=base.id, fp="same"), writer())
    # stored without a claim (an older Bonsai racing): the store keeps one model
    c = store.add_model(record("C", parent=base.id, fp="same"), writer())
    assert c.id == b.id
    assert [m.name for m in store.list_models()] == ["base", "B"]
    assert store.get_model("C").id == b.id and store.get_model("B").aliases == ["C"]
    assert {p.name for p in (store.root / "artifacts").iterdir()} == {base.id, b.id}


def test_duplicates_an_older_store_holds_are_merged_on_open(tmp_path: Path) -> None:
    c = store_at_version(tmp_path, 4)
    rows = [
        ("aaaa01", "base", None, "fp-base", 0.0),
        ("bbbb02", "p", "aaaa01", "fp-p", 1.0),
        ("cccc03", "q/1", "aaaa01", "fp-p", 2.0),
        ("dddd04", "q", "cccc03", "fp-q", 3.0),
    ]
    for mid, name, parent, fp, created in rows:
        c.execute(
            "INSERT INTO models (id, name, parent_id, artifact, created, fingerprint, complete, "
            "experiment_file, variant) VALUES (?, ?, ?, ?, ?, ?, 1, 'e.bonsai.yaml', ?)",
            (mid, name, parent, f"artifacts/{mid}", created, fp, name.split("/")[0]),
        )
        c.execute("INSERT INTO metrics (model_id, name, value) VALUES (?, 'accuracy', 0.5)", (mid,))
        folder = tmp_path / ".bonsai" / "artifacts" / mid
        folder.mkdir(parents=True)
        writer()(folder)
    c.commit()
    c.close()
    with LineageStore.open(tmp_path) as s:
        models = {m.name: m for m in s.list_models()}
        assert set(models) == {"base", "p", "q"}  # q/1 was p made again
        assert models["q"].parent_id == models["p"].id  # its child moved to the kept model
        assert models["p"].aliases == ["q/1"] and s.get_model("q/1").id == "bbbb02"
        assert not (s.root / "artifacts" / "cccc03").exists()
        assert s._query("SELECT count(*) FROM metrics WHERE model_id = 'cccc03'") == [(0,)]


def test_the_newer_of_a_model_name_and_an_alias_wins(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer())
    old_c = store.add_model(record("C", parent=base.id, fp="fp-c"), writer())
    b = store.add_model(record("B", parent=base.id, fp="fp-b"), writer())
    store.add_name(b.id, "C", None, "C")  # C's definition now matches B
    assert store.get_model("C").id == b.id
    store.add_name(old_c.id, "C", None, "C")  # and back: the model called C itself
    assert store.get_model("C").id == old_c.id and store.get_model("B").aliases == []


def test_the_claim_pid_is_the_process_making_the_model(store: LineageStore) -> None:
    store.claim("fp-w", "run-9")
    assert store._query("SELECT pid FROM claims WHERE fingerprint = 'fp-w'") == [(os.getpid(),)]
