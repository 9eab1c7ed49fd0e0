"""`.bonsai/` of one workspace folder: the lineage database, artifact folders and result cache.

Layout::

    .bonsai/lineage.sqlite      models, metrics, runs, cache index (WAL: readers never block)
    .bonsai/artifacts/<id>/     one folder per complete model (manifest.json, tensors, outputs)
    .bonsai/tmp/                artifacts being written, and the writers' lock files
    .bonsai/cache/<kind>/       cached comparison results, one file per key

A model is published in three steps: its artifact is written into ``tmp/<id>``, fsynced and
renamed to ``artifacts/<id>``, and only then is its row committed. A process killed at any point
leaves either nothing listed or a complete model; what it left behind is swept on the next open.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import NOT_FOUND, NotFoundError, UserError
from . import identity
from .fsio import WriterLock, abandoned, atomic_write_bytes, fsync_dir, fsync_tree, remove_tree
from .identity import Claim
from .measurements import delete_history, record_measurements
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .records import RUN_STATUSES, MetricRecord, ModelRecord, RunRecord

BONSAI_DIR = ".bonsai"
DB_NAME = "lineage.sqlite"
_BUSY_TIMEOUT_MS = 30_000
_CACHE_TMP_STALE_S = 3600
_MODEL_COLUMNS = (
    "id, name, parent_id, op, params_json, status, status_reason, artifact, created, seed, "
    "versions_json, experiment_file, variant, step, fingerprint, base_spec_json, complete, eval_fingerprint, "
    "imported_json"
)


class StoreError(UserError):
    """A user-facing problem with the store: unknown model, refused delete, unreadable database."""


class ModelNotFound(StoreError, NotFoundError):
    """No model of that name or id in the store (answered with NOT_FOUND, not USER_ERROR)."""

    code = NOT_FOUND


def new_id() -> str:
    return secrets.token_hex(6)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text (and hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


class LineageStore:
    """The lineage of one workspace folder. Open with :meth:`open`; safe to share across threads.

    Several processes may open the same store: a writer (a run) and readers (the language
    server) each have their own connection; WAL mode and a busy timeout keep readers working
    while a write is in progress.
    """

    def __init__(self, workspace: Path, conn: sqlite3.Connection):
        self.workspace = workspace
        self.root = workspace / BONSAI_DIR
        self._conn = conn
        self._lock = threading.RLock()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, workspace_folder: Path | str) -> LineageStore:
        workspace = Path(workspace_folder).resolve()
        if not workspace.is_dir():
            raise StoreError(f"workspace folder {workspace} does not exist")
        root = workspace / BONSAI_DIR
        for sub in ("artifacts", "tmp", "cache"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ignore = root / ".gitignore"
        if not ignore.exists():
            # Artifacts are large and machine-specific: keep them out of the user's repository.
            atomic_write_bytes(ignore, b"# created by Bonsai\n*\n")
        db = root / DB_NAME
        try:
            conn = sqlite3.connect(
                db, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            store = cls(workspace, conn)
            store._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{db} is not a readable Bonsai lineage database ({e})") from e
        store._sweep()
        store._merge_duplicates()
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> LineageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        row = self._query("SELECT version FROM schema_version")
        return int(row[0][0]) if row else 0

    def _migrate(self) -> None:
        # The common case (schema current) must not wait for a writer: check with a plain read
        # first, and take the write lock only when there is something to migrate.
        try:
            current = self._query("SELECT version FROM schema_version")
        except sqlite3.OperationalError:  # no schema_version table yet: a new store
            current = []
        if current and int(current[0][0]) == SCHEMA_VERSION:
            return
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.root / DB_NAME} has schema version {version}, newer than this Bonsai "
                    f"understands ({SCHEMA_VERSION}); upgrade modelbonsai"
                )
            for i in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[i]:
                    c.execute(statement)
                c.execute("UPDATE schema_version SET version = ?", (i + 1,))

    def _sweep(self) -> None:
        """Remove what crashed writers left: temp folders, unpublished artifacts, cache temps."""
        tmp = self.root / "tmp"
        for entry in tmp.iterdir():
            if entry.suffix == ".lock":
                continue
            if abandoned(entry, tmp / f"{entry.name}.lock"):
                remove_tree(entry)
        for entry in (self.root / "artifacts").iterdir():
            if self._has_row(entry.name):
                continue
            # Hold the writer's lock while re-checking: a live writer commits before releasing it.
            lock = WriterLock(tmp / f"{entry.name}.lock")
            if not lock.try_acquire():
                continue
            try:
                if not self._has_row(entry.name):
                    remove_tree(entry)
            finally:
                lock.release()
        for lock_file in tmp.glob("*.lock"):
            if not (tmp / lock_file.stem).exists() and abandoned(lock_file, lock_file):
                remove_tree(lock_file)
        now = time.time()
        for stale in (self.root / "cache").rglob(".tmp-*"):
            try:
                if now - stale.stat().st_mtime > _CACHE_TMP_STALE_S:
                    stale.unlink()
            except FileNotFoundError:
                pass

    # -- sql plumbing -------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, tuple(args)).fetchall())

    def _has_row(self, model_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM models WHERE id = ? AND complete = 1", (model_id,)))

    # -- models -------------------------------------------------------------------------------
    def artifact_path(self, model: ModelRecord | str) -> Path:
        """Absolute artifact folder of a model (record or id)."""
        if isinstance(model, ModelRecord):
            return self.root / model.artifact
        return self.root / "artifacts" / model

    def list_models(self) -> list[ModelRecord]:
        """Every complete model, oldest first, each with its status computed (ok or broken)."""
        rows = self._query(f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 ORDER BY created, rowid")
        with self._lock:
            names = identity.names_of(self._conn)
        return [self._with_status(_model_from_row(r, names)) for r in rows]

    def get_model(self, id_or_name: str) -> ModelRecord:
        """A model by id, unique id prefix (4+ characters) or name (the newest of that name)."""
        key = id_or_name.strip()
        rows = self._query(f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND id = ?", (key,))
        if not rows and len(key) >= 4 and all(ch in "0123456789abcdef" for ch in key):
            rows = self._query(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND id LIKE ? ESCAPE '\\'",
                (key + "%",),
            )
            if len(rows) > 1:
                raise StoreError(f"'{key}' matches {len(rows)} model ids; give more characters")
        if not rows:
            rows = self._query(
                f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND name = ? "
                "ORDER BY created DESC, rowid DESC LIMIT 1",
                (key,),
            )
            # A name given to a model stored under another name (its fingerprint matched): the
            # newer of the two says what the name means now.
            with self._lock:
                alias = identity.resolve_name(self._conn, key)
            if alias is not None and (not rows or alias[1] >= float(rows[0][8])):
                aliased = self._query(
                    f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND id = ?", (alias[0],)
                )
                rows = aliased or rows
        if not rows:
            raise ModelNotFound(f"no model '{key}' in {self.root}")
        with self._lock:
            names = identity.names_of(self._conn, [str(rows[0][0])])
        return self._with_status(_model_from_row(rows[0], names))

    def children(self, model_id: str) -> list[ModelRecord]:
        rows = self._query(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND parent_id = ? ORDER BY created, rowid",
            (model_id,),
        )
        return [self._with_status(_model_from_row(r)) for r in rows]

    def descendants(self, model_id: str) -> list[ModelRecord]:
        """Every model below `model_id`, parents before their children."""
        out: list[ModelRecord] = []
        frontier = [model_id]
        while frontier:
            nxt: list[str] = []
            for mid in frontier:
                for child in self.children(mid):
                    out.append(child)
                    nxt.append(child.id)
            frontier = nxt
        return out

    def root_of(self, rec: ModelRecord) -> ModelRecord:
        """The base model `rec` descends from (`rec` itself for a base; a parent cycle, which a
        hand-edited database could hold, stops at the model that closes it)."""
        cur, seen = rec, set()
        while cur.parent_id is not None and cur.id not in seen:
            seen.add(cur.id)
            cur = self.get_model(cur.parent_id)
        return cur

    def find_by_fingerprint(self, fingerprint: str, *, include_broken: bool = False) -> ModelRecord | None:
        """The newest complete, non-broken model with this fingerprint (what makes it up to date);
        with `include_broken`, a broken one too (so a re-run can replace it)."""
        rows = self._query(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE complete = 1 AND fingerprint = ? "
            "ORDER BY created DESC, rowid DESC",
            (fingerprint,),
        )
        for row in rows:
            rec = self._with_status(_model_from_row(row))
            if rec.status == "ok" or include_broken:
                return rec
        return None

    # -- one model per fingerprint (store/identity.py) ----------------------------------------
    def claim(self, fingerprint: str, run_id: str, *, reuse: bool = True) -> Claim:
        """Claim `fingerprint` before making its model: reuse a complete model of it (with
        `reuse`), wait while another live run holds it, else it is ours (released by the model's
        commit or by `release_claim`)."""
        with self._tx() as c:
            got = identity.claim(c, fingerprint, run_id, reuse=reuse, alive=_alive)
        if got.model_id is not None and self.get_model(got.model_id).status != "ok":
            # a broken model of this fingerprint is not reusable: make it again (it is replaced)
            with self._tx() as c:
                got = identity.claim(c, fingerprint, run_id, reuse=False, alive=_alive)
        return got

    def release_claim(self, fingerprint: str, run_id: str) -> None:
        with self._tx() as c:
            identity.release(c, fingerprint, run_id)

    def release_claims(self, run_id: str) -> None:
        """Every claim of a run that ends (a failed or cancelled step leaves its claim otherwise)."""
        with self._tx() as c:
            identity.release_run(c, run_id)

    def add_name(
        self, model_id: str, name: str, experiment_file: str | None, variant: str | None, step: int = 0
    ) -> None:
        """Make `name` (of `experiment_file`) resolve to `model_id`, stored under another name.
        Nothing to record when the model carries that name (and file) itself."""
        rows = self._query("SELECT name, experiment_file FROM models WHERE id = ?", (model_id,))
        if not rows:
            raise ModelNotFound(f"no model {model_id} to name '{name}'")
        if rows[0][0] == name and (rows[0][1] or "") == (experiment_file or ""):
            if self._query(
                "SELECT 1 FROM model_names WHERE experiment_file = ? AND name = ?",
                (experiment_file or "", name),
            ):
                with self._tx() as c:
                    identity.drop_name(c, name, experiment_file)
            return
        with self._tx() as c:
            identity.add_name(c, model_id, name, experiment_file, variant, step)

    def _merge_duplicates(self) -> None:
        """Stores written before fingerprints were claimed may hold several models of one
        fingerprint (two runs at once, or one run making a step twice): keep the oldest, give it
        the others' names and children, and remove the others."""
        with self._lock:
            groups = identity.duplicate_groups(self._conn)
        if not groups:
            return
        gone: list[str] = []
        with self._tx() as c:
            for group in identity.duplicate_groups(c):  # again, under the write lock
                keep = group[0][0]
                for mid, name, file, variant, step in group[1:]:
                    c.execute("UPDATE models SET parent_id = ? WHERE parent_id = ?", (keep, mid))
                    c.execute("UPDATE model_names SET model_id = ? WHERE model_id = ?", (keep, mid))
                    kept_name = c.execute(
                        "SELECT name, experiment_file FROM models WHERE id = ?", (keep,)
                    ).fetchone()
                    if (name, file or "") != (kept_name[0], kept_name[1] or ""):
                        identity.add_name(c, keep, name, file, variant, step)
                    _delete_rows(c, [mid])
                    gone.append(mid)
        for mid in gone:
            remove_tree(self.artifact_path(mid))

    def add_model(
        self,
        record: ModelRecord,
        artifact_writer: Callable[[Path], None],
        *,
        metrics: Iterable[Any] | Callable[[Path], Iterable[Any]] = (),
        replaces: str | None = None,
    ) -> ModelRecord:
        """Publish a model: write its artifact (via `artifact_writer(folder)`), then its row.

        `metrics` are stored in the same transaction, so a listed model always has them; pass a
        function of the written folder for metrics that measure the artifact (stored size).
        `replaces` names a model this one supersedes (a forced re-run): in the same transaction
        its children are re-parented to the new model and its row is removed.
        """
        rec = ModelRecord(**{**record.__dict__})
        rec.id = rec.id or new_id()
        rec.artifact = f"artifacts/{rec.id}"
        rec.created = rec.created or time.time()
        rec.complete = True
        rec.status, rec.status_reason = "ok", ""
        tmp_dir = self.root / "tmp" / rec.id
        final = self.root / rec.artifact
        lock = WriterLock(self.root / "tmp" / f"{rec.id}.lock")
        if not lock.try_acquire():
            raise StoreError(f"model id {rec.id} is being written by another process")
        try:
            if final.exists() or self._query("SELECT 1 FROM models WHERE id = ?", (rec.id,)):
                raise StoreError(f"model id {rec.id} already exists")
            tmp_dir.mkdir(parents=True)
            try:
                artifact_writer(tmp_dir)
                items = list(metrics(tmp_dir) if callable(metrics) else metrics)
                fsync_tree(tmp_dir)
                os.rename(tmp_dir, final)
                fsync_dir(final.parent)
                self._commit_model(rec, items, replaces)
            except _Duplicate as dup:
                # Another process stored this fingerprint first (it did not claim it: an older
                # Bonsai, or a caller without claims): one model, and this name resolves to it.
                remove_tree(tmp_dir)
                remove_tree(final)
                self.add_name(dup.model_id, rec.name, rec.experiment_file, rec.variant, rec.step)
                return self.get_model(dup.model_id)
            except BaseException:
                remove_tree(tmp_dir)
                remove_tree(final)
                raise
        finally:
            lock.release()
        if replaces:
            remove_tree(self.artifact_path(replaces))
        return rec

    def _commit_model(self, rec: ModelRecord, metrics: list[Any], replaces: str | None) -> None:
        with self._tx() as c:
            if rec.parent_id is not None:
                ok = c.execute(
                    "SELECT 1 FROM models WHERE id = ? AND complete = 1", (rec.parent_id,)
                ).fetchone()
                if not ok:
                    raise StoreError(f"parent model {rec.parent_id} of '{rec.name}' is not in the store")
            twin = identity.duplicate_of(c, rec.fingerprint, replaces)
            if twin is not None:
                raise _Duplicate(twin)
            c.execute(
                f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                (
                    rec.id,
                    rec.name,
                    rec.parent_id,
                    rec.op,
                    canonical_json(rec.params),
                    rec.status,
                    rec.status_reason,
                    rec.artifact,
                    rec.created,
                    int(rec.seed),
                    canonical_json(rec.versions),
                    rec.experiment_file,
                    rec.variant,
                    int(rec.step),
                    rec.fingerprint,
                    None if rec.base_spec is None else canonical_json(rec.base_spec),
                    1,
                    rec.eval_fingerprint,
                    None if rec.imported is None else canonical_json(rec.imported),
                ),
            )
            _insert_metrics(c, rec.id, metrics)
            identity.drop_name(c, rec.name, rec.experiment_file)
            if rec.fingerprint:
                identity.release(c, rec.fingerprint)
            if replaces:
                c.execute("UPDATE models SET parent_id = ? WHERE parent_id = ?", (rec.id, replaces))
                c.execute("UPDATE model_names SET model_id = ? WHERE model_id = ?", (rec.id, replaces))
                _delete_rows(c, [replaces])

    def replace_evaluation(
        self,
        model_id: str,
        eval_fingerprint: str,
        metrics: Iterable[Any],
        *,
        file_name: str,
        file_writer: Callable[[Path], None] | None,
    ) -> ModelRecord:
        """Swap a stored model's evaluation: its outputs file, all its metrics and its
        evaluation fingerprint; the model itself (id, artifact, children) stays as it is.

        The new outputs file is written under ``tmp/`` (a crashed writer's leftover is swept on
        open), fsynced and renamed over ``<artifact>/<file_name>``; then the metrics and the
        fingerprint change in one transaction. A crash between the two leaves new outputs with
        the old metrics and the *old* evaluation fingerprint, so the next run re-evaluates it
        again. `file_writer` None removes the outputs file (an evaluation without a task) once the
        metrics are committed.
        """
        rec = self.get_model(model_id)
        if rec.id != model_id:
            raise ModelNotFound(f"no model {model_id}")
        if rec.status != "ok":
            raise StoreError(f"model '{rec.name}' is broken: {rec.status_reason}")
        items = list(metrics)
        target = self.artifact_path(rec) / file_name
        token = f"{rec.id}-{new_id()}.eval"
        tmp_file = self.root / "tmp" / token
        lock = WriterLock(self.root / "tmp" / f"{token}.lock")
        if not lock.try_acquire():  # pragma: no cover - the token is random
            raise StoreError(f"{tmp_file} is being written by another process")
        try:
            if file_writer is not None:
                try:
                    file_writer(tmp_file)
                    with open(tmp_file, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp_file, target)
                    fsync_dir(target.parent)
                except BaseException:
                    remove_tree(tmp_file)
                    raise
            with self._tx() as c:
                if not c.execute("SELECT 1 FROM models WHERE id = ? AND complete = 1", (rec.id,)).fetchone():
                    raise StoreError(f"model '{rec.name}' ({rec.id}) was deleted while it was re-evaluated")
                c.execute("DELETE FROM metrics WHERE model_id = ?", (rec.id,))
                _insert_metrics(c, rec.id, items)
                c.execute("UPDATE models SET eval_fingerprint = ? WHERE id = ?", (eval_fingerprint, rec.id))
            if file_writer is None:
                remove_tree(target)  # after the commit: an outputs file nobody reads is harmless
        finally:
            lock.release()
        rec.eval_fingerprint = eval_fingerprint
        return rec

    def delete_model(self, model_id: str, *, recursive: bool = False) -> list[ModelRecord]:
        """Delete a model (and with `recursive`, everything derived from it); returns what went.

        Refuses, naming the children, when the model has children and `recursive` is not set.
        """
        target = self.get_model(model_id)
        below = self.descendants(target.id)
        if below and not recursive:
            names = ", ".join(f"{m.name} ({m.id})" for m in below[:5]) + (" …" if len(below) > 5 else "")
            raise StoreError(
                f"model '{target.name}' has {len(below)} derived model(s): {names}; "
                "delete them first or delete recursively"
            )
        gone = [target, *below]
        with self._tx() as c:
            _delete_rows(c, [m.id for m in gone])
        # After the commit: a crash here leaves orphan folders, which the next open sweeps.
        for m in reversed(gone):
            remove_tree(self.artifact_path(m))
        return gone

    def _with_status(self, rec: ModelRecord) -> ModelRecord:
        folder = self.root / rec.artifact
        reason = ""
        if not folder.is_dir():
            reason = f"artifact folder {BONSAI_DIR}/{rec.artifact} is missing"
        else:
            manifest = folder / "manifest.json"
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    reason = f"{BONSAI_DIR}/{rec.artifact}/manifest.json is not a JSON object"
                else:
                    reason = _check_files(folder, data, f"{BONSAI_DIR}/{rec.artifact}")
            except FileNotFoundError:
                reason = f"{BONSAI_DIR}/{rec.artifact}/manifest.json is missing"
            except (OSError, ValueError) as e:
                reason = f"{BONSAI_DIR}/{rec.artifact}/manifest.json is unreadable ({e})"
        if reason:
            rec.status, rec.status_reason = "broken", reason
        return rec

    # -- metrics ------------------------------------------------------------------------------
    def put_metrics(self, model_id: str, metrics: Iterable[Any]) -> None:
        """Store (or overwrite by name) metrics: MetricRecord, tasks.base.Metric or dicts."""
        items = list(metrics)
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone():
                raise ModelNotFound(f"no model {model_id} to attach metrics to")
            _insert_metrics(c, model_id, items)

    def metrics(self, model_id: str) -> list[MetricRecord]:
        rows = self._query(
            f"SELECT {_METRIC_COLUMNS} FROM metrics WHERE model_id = ? ORDER BY rowid",
            (model_id,),
        )
        return [_metric_from_row(r) for r in rows]

    def all_metrics(self) -> dict[str, list[MetricRecord]]:
        """Metrics of every model at once (for tables), keyed by model id."""
        out: dict[str, list[MetricRecord]] = {}
        for r in self._query(f"SELECT {_METRIC_COLUMNS} FROM metrics ORDER BY rowid"):
            m = _metric_from_row(r)
            out.setdefault(m.model_id, []).append(m)
        return out

    # -- runs ---------------------------------------------------------------------------------
    def start_run(
        self, experiment_file: str, variants: Sequence[str], *, status: str = "running"
    ) -> RunRecord:
        if status not in ("queued", "running"):
            raise ValueError(f"a run starts queued or running, not {status}")
        run = RunRecord(
            id=new_id(),
            experiment_file=str(experiment_file),
            variants=list(variants),
            status=status,
            started=time.time(),
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (id, experiment_file, variants_json, status, message, started, finished, "
                "failures_json, pid, host) VALUES (?, ?, ?, ?, '', ?, NULL, '{}', ?, ?)",
                (
                    run.id,
                    run.experiment_file,
                    json.dumps(run.variants),
                    status,
                    run.started,
                    run.pid,
                    run.host,
                ),
            )
        return run

    def set_run_status(self, run_id: str, status: str, message: str = "") -> None:
        """Move a queued run to running (or update its message while it runs)."""
        if status not in ("queued", "running"):
            raise ValueError("use finish_run for a final status")
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status = ?, message = ?, pid = ? WHERE id = ?",
                (status, message, os.getpid(), run_id),
            )

    def finish_run(
        self, run_id: str, status: str, message: str = "", failures: dict[str, str] | None = None
    ) -> None:
        if status not in RUN_STATUSES[2:]:
            raise ValueError(f"a run finishes done, failed or cancelled, not {status}")
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status = ?, message = ?, finished = ?, failures_json = ? WHERE id = ?",
                (status, message, time.time(), json.dumps(failures or {}), run_id),
            )

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id}")
        return _run_from_row(rows[0])

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [_run_from_row(r) for r in rows]

    # -- result cache -------------------------------------------------------------------------
    def cache_get(self, kind: str, key: dict[str, Any]) -> bytes | None:
        key_hash = _cache_hash(kind, key)
        rows = self._query("SELECT path FROM cache WHERE kind = ? AND key_hash = ?", (kind, key_hash))
        if not rows:
            return None
        try:
            return (self.root / rows[0][0]).read_bytes()
        except FileNotFoundError:
            with self._tx() as c:
                c.execute("DELETE FROM cache WHERE kind = ? AND key_hash = ?", (kind, key_hash))
            return None

    def cache_put(self, kind: str, key: dict[str, Any], data: bytes) -> None:
        """Cache `data` under (kind, canonical JSON of key). Model ids in the key tie the entry to
        those models: deleting a model drops the entries that mention it."""
        if not kind or not all(ch.isalnum() or ch in "-_." for ch in kind) or kind.startswith("."):
            raise ValueError(f"cache kind must be a simple name, got {kind!r}")
        key_json = canonical_json(key)
        key_hash = _cache_hash(kind, key)
        rel = f"cache/{kind}/{key_hash}.bin"
        atomic_write_bytes(self.root / rel, data)
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO cache (kind, key_hash, key_json, path, size, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, key_hash, key_json, rel, len(data), time.time()),
            )

    def cache_clear(self, kind: str | None = None) -> int:
        """Drop cached results (all, or of one kind); returns how many entries went."""
        with self._tx() as c:
            if kind is None:
                rows = c.execute("SELECT path FROM cache").fetchall()
                c.execute("DELETE FROM cache")
            else:
                rows = c.execute("SELECT path FROM cache WHERE kind = ?", (kind,)).fetchall()
                c.execute("DELETE FROM cache WHERE kind = ?", (kind,))
        for (path,) in rows:
            remove_tree(self.root / path)
        return len(rows)


_METRIC_COLUMNS = "model_id, name, value, unit, higher_is_better, headline, detail, spread, noisy"
_RUN_COLUMNS = (
    "id, experiment_file, variants_json, status, message, started, finished, failures_json, pid, host"
)


def _cache_hash(kind: str, key: dict[str, Any]) -> str:
    return hashlib.sha256(f"{kind}\0{canonical_json(key)}".encode()).hexdigest()


def _check_files(folder: Path, manifest: dict[str, Any], where: str) -> str:
    """Cheap checks (existence, recorded size) of the files a manifest names; '' when fine.

    Understands the artifact format's `tensors_file` + `tensors_bytes` and a generic `files` list.
    Reading the tensors is left to the artifact loader: listing must stay fast.
    """
    names: list[str] = []
    files = manifest.get("files")
    if isinstance(files, (list, dict)):
        names += [f for f in files if isinstance(f, str)]
    tensors_file = manifest.get("tensors_file")
    if isinstance(tensors_file, str):
        names.append(tensors_file)
    names = [f for f in names if "/" not in f and "\\" not in f and f not in ("", ".", "..")]
    missing = [f for f in names if not (folder / f).is_file()]
    if missing:
        return f"{where} lacks {', '.join(missing)}"
    expected = manifest.get("tensors_bytes")
    if isinstance(tensors_file, str) and isinstance(expected, int):
        size = (folder / tensors_file).stat().st_size
        if size != expected:
            return f"{where}/{tensors_file} is {size} bytes, the manifest recorded {expected} (truncated?)"
    return ""


def _insert_metrics(c: sqlite3.Connection, model_id: str, metrics: list[Any]) -> None:
    for m in metrics:
        get = m.get if isinstance(m, dict) else lambda k, d=None, m=m: getattr(m, k, d)
        raw: Any = get("value")
        try:
            value: float | None = float(raw)  # ints, floats, numpy and 0-d torch scalars alike
        except (TypeError, ValueError):
            raise ValueError(f"metric {get('name')!r} needs a numeric value, got {raw!r}") from None
        if value != value:  # NaN: stored as NULL, read back as NaN
            value = None
        spread = get("spread")
        c.execute(
            "INSERT OR REPLACE INTO metrics (model_id, name, value, unit, higher_is_better, headline, detail, "
            "spread, noisy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model_id,
                str(get("name")),
                value,
                str(get("unit", "") or ""),
                int(bool(get("higher_is_better", True))),
                int(bool(get("headline", False))),
                str(get("detail", "") or ""),
                None if spread is None else float(spread),
                int(bool(get("noisy", False))),
            ),
        )
    # a latency goes into the model's measurement history, and its row shows the best of it
    record_measurements(c, model_id, metrics)


class _Duplicate(Exception):
    """A model of this fingerprint is already stored (`model_id`)."""

    def __init__(self, model_id: str):
        super().__init__(model_id)
        self.model_id = model_id


def _delete_rows(c: sqlite3.Connection, ids: list[str]) -> None:
    for mid in ids:
        c.execute("DELETE FROM models WHERE id = ?", (mid,))
        c.execute("DELETE FROM model_names WHERE model_id = ?", (mid,))
        c.execute("DELETE FROM metrics WHERE model_id = ?", (mid,))
        delete_history(c, mid)
        # Cached results keyed by this model are meaningless now (ids are random hex: no false hits).
        c.execute("DELETE FROM cache WHERE key_json LIKE ?", (f"%{mid}%",))


def _model_from_row(r: tuple[Any, ...], names: dict[str, list[str]] | None = None) -> ModelRecord:
    return ModelRecord(
        id=r[0],
        name=r[1],
        parent_id=r[2],
        op=r[3],
        params=json.loads(r[4] or "{}"),
        status=r[5],
        status_reason=r[6],
        artifact=r[7],
        created=float(r[8]),
        seed=int(r[9]),
        versions=json.loads(r[10] or "{}"),
        experiment_file=r[11],
        variant=r[12],
        step=int(r[13]),
        fingerprint=r[14],
        base_spec=None if r[15] is None else json.loads(r[15]),
        complete=bool(r[16]),
        eval_fingerprint=r[17],
        aliases=list((names or {}).get(r[0], [])),
        imported=None if r[18] is None else json.loads(r[18]),
    )


def _metric_from_row(r: tuple[Any, ...]) -> MetricRecord:
    return MetricRecord(
        model_id=r[0],
        name=r[1],
        value=float("nan") if r[2] is None else float(r[2]),
        unit=r[3],
        higher_is_better=bool(r[4]),
        headline=bool(r[5]),
        detail=r[6] or "",
        spread=None if r[7] is None else float(r[7]),
        noisy=bool(r[8]),
    )


def _run_from_row(r: tuple[Any, ...]) -> RunRecord:
    run = RunRecord(
        id=r[0],
        experiment_file=r[1],
        variants=json.loads(r[2] or "[]"),
        status=r[3],
        message=r[4],
        started=float(r[5]),
        finished=None if r[6] is None else float(r[6]),
        failures=json.loads(r[7] or "{}"),
        pid=r[8],
        host=r[9],
    )
    if run.status in ("queued", "running") and run.host == socket.gethostname() and not _alive(run.pid):
        run.status, run.message = "failed", "interrupted: the process running it is gone"
    return run


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
