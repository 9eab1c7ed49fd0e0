"""Shared bits of the store tests: a tiny artifact writer that looks like a real artifact."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from modelbonsai.store import ModelRecord


def writer(payload: bytes = b"x" * 1000) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "tensors.bin").write_bytes(payload)
        (folder / "manifest.json").write_text(json.dumps({"files": ["tensors.bin"], "size": len(payload)}))

    return write


def record(name: str, parent: str | None = None, fp: str = "") -> ModelRecord:
    return ModelRecord(
        name=name,
        parent_id=parent,
        op=None if parent is None else "test.op",
        params={"k": 1},
        fingerprint=fp or f"fp-{name}",
    )


def store_at_version(root: Path, version: int) -> sqlite3.Connection:
    """A lineage database under `root` as Bonsai left it at schema `version` (its first `version`
    migrations applied), open for the test to add rows; commit and close it, then open the store."""
    from modelbonsai.store.migrations import MIGRATIONS

    db = root / ".bonsai" / "lineage.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    c.execute("INSERT INTO schema_version VALUES (?)", (version,))
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            c.execute(statement)
    return c
