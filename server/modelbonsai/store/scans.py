"""Sensitivity scans in the lineage database (table `scans`, migration 8).

A scan is written once, complete, in one transaction: a scan killed halfway leaves no row, so
nothing partial is ever listed. Its fingerprint (scan/spec.py) finds it again: the same scan of
the same base is reused, not measured twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lineage import LineageStore


@dataclass(frozen=True)
class ScanRecord:
    id: str
    fingerprint: str
    experiment_file: str | None
    base_fingerprint: str
    created: float
    result: dict[str, Any]


_COLUMNS = "id, fingerprint, experiment_file, base_fingerprint, created, result_json"


def put_scan(
    store: LineageStore,
    fingerprint: str,
    result: dict[str, Any],
    *,
    base_fingerprint: str,
    experiment_file: str | None,
) -> ScanRecord:
    """Store a complete scan (replacing an earlier one of the same fingerprint)."""
    from .lineage import new_id

    rec = ScanRecord(new_id(), fingerprint, experiment_file, base_fingerprint, time.time(), result)
    with store._tx() as c:
        c.execute("DELETE FROM scans WHERE fingerprint = ?", (fingerprint,))
        c.execute(
            f"INSERT INTO scans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (rec.id, fingerprint, experiment_file, base_fingerprint, rec.created, json.dumps(result)),
        )
    return rec


def get_scan(store: LineageStore, fingerprint: str) -> ScanRecord | None:
    rows = store._query(f"SELECT {_COLUMNS} FROM scans WHERE fingerprint = ?", (fingerprint,))
    return _record(rows[0]) if rows else None


def list_scans(store: LineageStore, experiment_file: str | None = None) -> list[ScanRecord]:
    """Every stored scan (of one experiment file when given), newest first."""
    if experiment_file is None:
        rows = store._query(f"SELECT {_COLUMNS} FROM scans ORDER BY created DESC")
    else:
        rows = store._query(
            f"SELECT {_COLUMNS} FROM scans WHERE experiment_file = ? ORDER BY created DESC",
            (experiment_file,),
        )
    return [_record(r) for r in rows]


def _record(r: tuple[Any, ...]) -> ScanRecord:
    return ScanRecord(r[0], r[1], r[2], r[3], float(r[4]), json.loads(r[5]))
