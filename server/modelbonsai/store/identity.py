"""One model per fingerprint: the claims that keep two processes from making the same model, the
other names a model answers to, and the merge of duplicates older stores may hold.

A fingerprint says everything that determines a model's weights (runner.step_fingerprint). Two
variants (or a variant and another's intermediate step) with one fingerprint are one model: it is
stored once, under the name of whichever made it first, and every other name that resolves to it
is a row of `model_names` (`bonsai show C` finds the model B made).

Claims: a run claims a fingerprint in the database before making it; the commit of the model
releases the claim in the same transaction. Another run that wants the same fingerprint sees the
claim and waits (the model appears, or the claim goes away because its run failed or died), so
the work is done once whatever the number of processes. A claim of a process that is gone (same
host, pid not alive) or older than `STALE_CLAIM_S` (another host, which cannot be asked) is taken
over.

These functions take a connection inside a transaction the store opened (`LineageStore._tx`).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

# A claim from another host whose process cannot be checked is trusted this long.
STALE_CLAIM_S = 6 * 3600


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a fingerprint: `model_id` (a complete model has it: reuse it),
    else `holder` (another live run is making it: wait), else it is ours to make."""

    model_id: str | None = None
    holder: str | None = None  # "run <id> (pid N on host)"

    @property
    def ours(self) -> bool:
        return self.model_id is None and self.holder is None


def claim(c: sqlite3.Connection, fingerprint: str, run_id: str, *, reuse: bool, alive: Any) -> Claim:
    """Claim `fingerprint` for `run_id` (inside a write transaction). With `reuse`, a complete
    model of that fingerprint whose artifact exists is returned instead; `alive(pid)` tells
    whether a process on this host still runs."""
    if reuse:
        row = c.execute(
            "SELECT id, artifact FROM models WHERE complete = 1 AND fingerprint = ? "
            "ORDER BY created, rowid LIMIT 1",
            (fingerprint,),
        ).fetchone()
        if row is not None:
            return Claim(model_id=str(row[0]))
    held = c.execute(
        "SELECT run_id, pid, host, created FROM claims WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    here = socket.gethostname()
    if held is not None and held[0] != run_id:
        holder_run, pid, host, created = str(held[0]), int(held[1]), str(held[2]), float(held[3])
        gone = (host == here and not alive(pid)) or (host != here and time.time() - created > STALE_CLAIM_S)
        if not gone:
            return Claim(holder=f"run {holder_run} (pid {pid} on {host})")
    c.execute(
        "INSERT OR REPLACE INTO claims (fingerprint, run_id, pid, host, created) VALUES (?, ?, ?, ?, ?)",
        (fingerprint, run_id, os.getpid(), here, time.time()),
    )
    return Claim()


def release(c: sqlite3.Connection, fingerprint: str, run_id: str | None = None) -> None:
    """Drop the claim on `fingerprint` (only `run_id`'s, when given)."""
    if run_id is None:
        c.execute("DELETE FROM claims WHERE fingerprint = ?", (fingerprint,))
    else:
        c.execute("DELETE FROM claims WHERE fingerprint = ? AND run_id = ?", (fingerprint, run_id))


def release_run(c: sqlite3.Connection, run_id: str) -> None:
    c.execute("DELETE FROM claims WHERE run_id = ?", (run_id,))


# -- names --------------------------------------------------------------------------------------


def add_name(
    c: sqlite3.Connection,
    model_id: str,
    name: str,
    experiment_file: str | None,
    variant: str | None,
    step: int,
) -> None:
    """`name` (of `experiment_file`) now resolves to `model_id`: the latest say wins."""
    c.execute(
        "INSERT OR REPLACE INTO model_names (experiment_file, name, model_id, variant, step, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (experiment_file or "", name, model_id, variant, int(step), time.time()),
    )


def drop_name(c: sqlite3.Connection, name: str, experiment_file: str | None) -> None:
    """A model stored under `name` itself supersedes an alias of that name."""
    c.execute("DELETE FROM model_names WHERE experiment_file = ? AND name = ?", (experiment_file or "", name))


def names_of(c: sqlite3.Connection, model_ids: list[str] | None = None) -> dict[str, list[str]]:
    """model id -> its other names, oldest first (every model's, or those of `model_ids`)."""
    out: dict[str, list[str]] = {}
    sql = "SELECT model_id, name FROM model_names"
    args: tuple[Any, ...] = ()
    if model_ids is not None:
        if not model_ids:
            return out
        sql += f" WHERE model_id IN ({', '.join('?' * len(model_ids))})"
        args = tuple(model_ids)
    for mid, name in c.execute(sql + " ORDER BY created, rowid", args).fetchall():
        if name not in out.setdefault(str(mid), []):
            out[str(mid)].append(str(name))
    return out


def resolve_name(c: sqlite3.Connection, name: str) -> tuple[str, float] | None:
    """(model id, when the name was given) of the newest alias `name`, if any."""
    row = c.execute(
        "SELECT model_id, created FROM model_names WHERE name = ? ORDER BY created DESC, rowid DESC LIMIT 1",
        (name,),
    ).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def duplicate_of(c: sqlite3.Connection, fingerprint: str, exclude: str | None) -> str | None:
    """A complete model (not `exclude`) already stored with `fingerprint` ('' matches nothing)."""
    if not fingerprint:
        return None
    row = c.execute(
        "SELECT id FROM models WHERE complete = 1 AND fingerprint = ? AND id != ? "
        "ORDER BY created, rowid LIMIT 1",
        (fingerprint, exclude or ""),
    ).fetchone()
    return None if row is None else str(row[0])


def duplicate_groups(c: sqlite3.Connection) -> list[list[tuple[str, str, str | None, str | None, int]]]:
    """Complete models sharing a fingerprint, oldest first per group:
    (id, name, experiment_file, variant, step)."""
    fps = [
        str(r[0])
        for r in c.execute(
            "SELECT fingerprint FROM models WHERE complete = 1 AND fingerprint != '' "
            "GROUP BY fingerprint HAVING count(*) > 1"
        ).fetchall()
    ]
    groups = []
    for fp in fps:
        rows = c.execute(
            "SELECT id, name, experiment_file, variant, step FROM models WHERE complete = 1 "
            "AND fingerprint = ? ORDER BY created, rowid",
            (fp,),
        ).fetchall()
        groups.append([(str(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in rows])
    return groups
