"""`bonsai/lineage`: the store's models as ModelInfo, cached so a flood of requests stays cheap.

Listing a store checks every artifact's manifest (to mark broken models), which costs
milliseconds per hundred models. The answer is cached per folder and recomputed when the
database changed (SQLite's ``PRAGMA data_version`` on a connection of our own moves whenever any
other connection commits: a job in this server or a `bonsai run` in a terminal), when the server
itself says so (a job finished), or, in the background, every few seconds (an artifact folder
deleted by hand).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from ..store import BONSAI_DIR, LineageStore, MetricRecord, ModelRecord, experiment_path
from ..store.lineage import DB_NAME
from .drift import DriftIndex, FileKey, file_key
from .protocol import MetricDef, MetricSpread, ModelInfo

log = logging.getLogger(__name__)

#: a model shown with a status the store does not record: (what it was made from: the stored
#: model's part, or the failed variant's info), (its info, serialized)
_Overlay = tuple[object, tuple[ModelInfo, str]]


class MetricTable:
    """The metric definitions of one folder's lineage (sent once per reply, not per model), each
    under a key that never changes while the server runs, so a model's serialized fragment stays
    valid: the metric's name, or ``name#2``, ... for another definition under the same name."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str, bool, bool], str] = {}
        self._defs: dict[str, MetricDef] = {}
        self._snapshot: tuple[dict[str, MetricDef], str] = ({}, "{}")
        self._lock = threading.Lock()

    def key(self, m: MetricRecord) -> str:
        d = (m.name, m.unit or "", bool(m.higher_is_better), bool(m.headline))
        with self._lock:
            key = self._keys.get(d)
            if key is None:
                key, n = m.name, 1
                while key in self._defs:
                    n += 1
                    key = f"{m.name}#{n}"
                self._keys[d] = key
                self._defs[key] = {"name": d[0], "unit": d[1], "higherIsBetter": d[2], "headline": d[3]}
                self._snapshot = (dict(self._defs), _dumps(self._defs))
            return key

    def snapshot(self) -> tuple[dict[str, MetricDef], str]:
        """Every definition so far and its JSON (a superset of what any model made so far uses)."""
        with self._lock:
            return self._snapshot


def metric_values(metrics: list[MetricRecord], table: MetricTable) -> dict[str, float]:
    """A model's metrics as key -> value. JSON has no NaN/Infinity (JSON.parse rejects them): such
    a metric is left out."""
    return {
        table.key(m): float(m.value)
        for m in metrics
        if isinstance(m.value, (int, float)) and math.isfinite(m.value)
    }


def metric_spreads(metrics: list[MetricRecord], table: MetricTable) -> dict[str, MetricSpread]:
    """The spread of each metric that has one (latency), by key; a noisy one says why (the first
    clause of its detail: efficiency.latency_metrics puts the reason there)."""
    out: dict[str, MetricSpread] = {}
    for m in metrics:
        if m.spread is None or not math.isfinite(m.spread) or not math.isfinite(m.value):
            continue
        s: MetricSpread = {"spread": float(m.spread), "noisy": bool(m.noisy)}
        if m.noisy and m.detail:
            s["note"] = m.detail.split("; ")[0]
        out[table.key(m)] = s
    return out


def model_info(
    rec: ModelRecord, metrics: list[MetricRecord], workspace: Path, table: MetricTable
) -> ModelInfo:
    info: ModelInfo = {
        "id": rec.id,
        "name": rec.name,
        "parent": rec.parent_id,
        "op": rec.op,
        "params": cast("dict[str, Any]", _json_safe(rec.params)),
        # the store's statuses; drift.py adds stale and failed, a running job running
        "status": "broken" if rec.status == "broken" else "ok",
        "metrics": metric_values(metrics, table),
        "created": datetime.fromtimestamp(rec.created or 0.0, tz=timezone.utc).isoformat(),
    }
    if rec.status_reason:
        info["statusReason"] = rec.status_reason
    if rec.aliases:
        info["aliases"] = list(rec.aliases)
    if rec.imported:
        src = rec.imported
        info["imported"] = {
            "tool": str(src.get("tool", "")),
            "file": str(src.get("file", "")),
            "id": str(src.get("id", "")),
        }
    # The rest of a recipe besides the ops (the Model Map's recipe diff): the seed the ops ran
    # with, and what the metrics were evaluated on (the task's hash and the instance counts).
    info["seed"] = int(rec.seed)
    if rec.eval_fingerprint:
        # "<task hash>:<evaluated>/<total>" (runner.split_evaluation_fingerprint; not imported:
        # the runner imports torch, which the server's main process does not load for a read)
        task, _, limit = rec.eval_fingerprint.partition(":")
        info["evaluation"] = {"task": task, "instances": limit}
    spreads = metric_spreads(metrics, table)
    if spreads:
        info["spreads"] = spreads
    if rec.experiment_file and rec.variant:
        info["experiment"] = {
            "file": str(experiment_path(rec.experiment_file, workspace)),
            "variant": rec.variant,
        }
    return info


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def read_lineage(store: LineageStore, table: MetricTable) -> list[ModelInfo]:
    metrics = store.all_metrics()
    return [model_info(rec, metrics.get(rec.id, []), store.workspace, table) for rec in store.list_models()]


class RawJSON:
    """A result already serialized (UTF-8 JSON): the protocol writes it as is. A 2,000-model
    lineage is megabytes of JSON; encoding it once per change instead of once per request is
    what keeps a flood of lineage requests cheap."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


@dataclass
class _Entry:
    version: int
    at: float
    cost: float  # seconds the last (incremental) computation took
    models: list[ModelInfo]
    data: bytes  # the LineageResult as UTF-8 JSON
    keys: frozenset[tuple[str, str]]  # (experiment file, variant) of every model
    parts: dict[str, tuple[ModelInfo, str]]  # id -> (ModelInfo, its JSON), in lineage order
    full_at: float = 0.0  # when every model was last re-read (statuses, metrics)
    full_cost: float = 0.0
    # the answer with the models a running job is re-making marked "running": (which, JSON)
    running: tuple[tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]], bytes] | None = None
    # With the failed/stale overlay (see drift.py): the store-only entry it was made from and
    # the experiment files (path, mtime, size) it read; it holds while both do.
    source: _Entry | None = None
    files: tuple[FileKey, ...] = ()
    # id -> its evaluation fingerprint and other names (`LineageCache._ids`): a re-evaluated
    # model (same id, new metrics) or one a variant was matched to is re-read
    evaluated: dict[str, str | None] = field(default_factory=dict)
    # the metric definitions the models' keys refer to (LineageResult.metrics) and their JSON
    metrics: dict[str, MetricDef] = field(default_factory=dict)
    metrics_json: str = "{}"

    def with_running(
        self, folder: Path, live: set[tuple[str, str]], ids: dict[str, str] | None = None
    ) -> bytes:
        """The serialized answer with the models of `live` (experiment file, variant) that are
        "ok", "stale" or "failed" marked "running", and so are the models of `ids` (id -> why:
        a running job re-evaluates or re-makes them without being asked; the why is their
        statusReason). Only those models are serialized again (the others reuse their
        fragments), and the answer is kept for the next request while the same job runs: a
        2,000-model lineage serialized as a whole costs hundreds of ms on a busy machine."""
        hit = frozenset(live & self.keys)
        marked = frozenset((i, why) for i, why in (ids or {}).items() if i in self.parts)
        if not hit and not marked:
            return self.data
        cached = self.running
        if cached is not None and cached[0] == (hit, marked):
            return cached[1]
        whys = dict(marked)
        frags = []
        for info, frag in self.parts.values():
            exp = info.get("experiment")
            if info["status"] in ("ok", "stale", "failed"):
                if info["id"] in whys:
                    frag = _dumps({**info, "status": "running", "statusReason": whys[info["id"]]})
                elif exp and (exp["file"], exp["variant"]) in hit:
                    frag = _dumps({**info, "status": "running"})
            frags.append(frag)
        data = _document(folder, self.metrics_json, frags)
        self.running = ((hit, marked), data)
        return data


# Below this, a changed lineage is recomputed inside the request; above, the request gets the
# previous answer while it is recomputed in the background (and lineageChanged follows).
_SYNC_COST_S = 0.05
# Every model is re-read (an artifact deleted by hand shows as broken) at most this often, and
# never more than ~5% of the time.
_FULL_EVERY_S = 30.0


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _entry(
    folder: Path,
    version: int,
    parts: dict[str, tuple[ModelInfo, str]],
    cost: float,
    full_at: float,
    full_cost: float,
    evaluated: dict[str, str | None],
    metrics: tuple[dict[str, MetricDef], str],
) -> _Entry:
    models = [info for info, _ in parts.values()]
    keys = frozenset(
        (m["experiment"]["file"], m["experiment"]["variant"]) for m in models if "experiment" in m
    )
    data = _document(folder, metrics[1], [frag for _, frag in parts.values()])
    return _Entry(
        version,
        time.monotonic(),
        cost,
        models,
        data,
        keys,
        parts,
        full_at,
        full_cost,
        evaluated=evaluated,
        metrics=metrics[0],
        metrics_json=metrics[1],
    )


def _document(folder: Path, metrics_json: str, fragments: list[str]) -> bytes:
    """The LineageResult as UTF-8 JSON, from the metric table's and the models' serialized forms."""
    return (
        '{"folder":'
        + _dumps(str(folder))
        + ',"metrics":'
        + metrics_json
        + ',"models":['
        + ",".join(fragments)
        + "]}"
    ).encode("utf-8")


class LineageCache:
    """Per-folder cache of the lineage (models and their serialized JSON).

    A change is applied incrementally: the ids (and parents) of the complete models are read
    with one small query, and only models that are new or re-parented are read in full, so a
    job storing one model into a 2,000-model store costs milliseconds, not a re-listing.
    Background recomputations run on one thread of their own and are coalesced: however many
    models a job stores in a burst, at most one recomputation per folder waits at any time.
    """

    def __init__(
        self,
        open_store: Callable[[Path], LineageStore],
        busy: Callable[[], bool] = lambda: False,
        limit: Callable[[], int | None] = lambda: None,
    ):
        self._open_store = open_store
        # The instance limit this server's runs evaluate with (its setting; None: each file's):
        # a model evaluated with another is stale, as a run would re-evaluate it. Read when a
        # folder's drift index is made: the setting is fixed at initialize, before any request.
        self.limit = limit
        # While jobs run, the periodic full re-read waits: it only looks for artifacts deleted
        # by hand, and the CPU is better spent on the job and on answering requests.
        self.busy = busy
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._full_running = False
        self._entries: dict[Path, _Entry] = {}  # from the store alone
        self._shown: dict[Path, _Entry] = {}  # with the failed/stale overlay
        self._drift: dict[Path, DriftIndex] = {}
        self._tables: dict[Path, MetricTable] = {}  # kept across refreshes: keys stay valid
        # folder -> model id -> (its store part, the overlay part made from it): an overlay
        # part is serialized again only when its model or its status changed
        self._overlays: dict[Path, dict[str, _Overlay]] = {}
        self.overlay_dumps = 0  # overlay parts serialized (the drift work's other half; tests count it)
        self._versions: dict[Path, sqlite3.Connection] = {}
        self._readers: dict[Path, sqlite3.Connection] = {}
        # folder -> callbacks of a refresh that is queued but has not started yet
        self._pending: dict[Path, list[Callable[[Path], None]]] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bonsai-lineage")

    def invalidate(self, folder: Path | None = None) -> None:
        with self._lock:
            if folder is None:
                self._entries.clear()
                self._shown.clear()
            else:
                self._entries.pop(folder, None)
                self._shown.pop(folder, None)

    def peek(self, folder: Path, on_refreshed: Callable[[Path], None] | None = None) -> _Entry | None:
        """The answer if it can be given without computing (cheap: safe on the event loop).

        A stale answer is given when recomputing is slow; a refresh is then queued and
        `on_refreshed(folder)` is called if the lineage turned out to differ."""
        entry = self._peek_store(folder, on_refreshed)
        return None if entry is None else self._fresh_shown(folder, entry)

    def _peek_store(self, folder: Path, on_refreshed: Callable[[Path], None] | None) -> _Entry | None:
        """The store-only entry (no failed/stale overlay) if it can be given without computing."""
        if not (folder / BONSAI_DIR / DB_NAME).is_file():
            # never create .bonsai/ just because someone looked
            return _entry(folder, -1, {}, 0.0, time.monotonic(), 0.0, {}, ({}, "{}"))
        version = self._data_version(folder)
        with self._lock:
            entry = self._entries.get(folder)
        if entry is None:
            return None
        stale = entry.version != version
        if stale and entry.cost <= _SYNC_COST_S:
            return None
        due = time.monotonic() - entry.full_at > max(_FULL_EVERY_S, 20 * entry.full_cost) and not self.busy()
        if stale or due:
            self.refresh_later(folder, on_refreshed, only_if_changed=True)
        return entry

    def get(self, folder: Path, on_refreshed: Callable[[Path], None] | None = None) -> _Entry:
        entry = self._peek_store(folder, on_refreshed)
        if entry is None:
            with self._lock:
                old = self._entries.get(folder)
            if old is not None and self._full_running:
                # A full re-read is under way (seconds on a big store): answer with the previous
                # lineage rather than queue behind it; the refresh after it tells the client.
                self.refresh_later(folder, on_refreshed, only_if_changed=True)
                entry = old
            else:
                entry = self.refresh(folder, full=False)
        return self.shown(folder, entry)

    def _fresh_shown(self, folder: Path, entry: _Entry) -> _Entry | None:
        """The answer with the failed/stale overlay if the one made last still holds: made from
        `entry`, and no experiment file it read was edited since (a few stats)."""
        if entry.version == -1 and not entry.parts:
            return entry  # no store (or an unreadable one): nothing to overlay
        with self._lock:
            shown = self._shown.get(folder)
        if shown is None or shown.source is not entry:
            return None
        if any(file_key(key[0]) != key for key in shown.files):
            return None
        return shown

    def shown(self, folder: Path, entry: _Entry) -> _Entry:
        """`entry` with the statuses the store does not record (drift.py): stale models,
        failed variants. Computed here (in a reader thread), reused while it holds."""
        fresh = self._fresh_shown(folder, entry)
        if fresh is not None:
            return fresh
        with self._compute_lock:
            t0 = time.perf_counter()
            conn = self._reader(folder)
            index = self._drift.get(folder)
            if index is None:
                index = self._drift[folder] = DriftIndex(folder, self.limit())
            found = index.update(entry.parts, lambda sql, args: conn.execute(sql, args).fetchall())
            if not found.stale and not found.failed:
                shown = replace(entry, running=None)
                self._overlays.pop(folder, None)
            else:
                parts = dict(entry.parts)
                before = self._overlays.get(folder, {})
                after: dict[str, _Overlay] = {}

                def kept(mid: str, source: object, why: str | None) -> _Overlay | None:
                    # the one made last, while made from the same source object for the same reason
                    made = before.get(mid)
                    ok = made is not None and made[0] is source and made[1][0].get("statusReason") == why
                    return made if ok else None

                def made_now(source: object, info: ModelInfo) -> _Overlay:
                    self.overlay_dumps += 1
                    return source, (info, _dumps(info))

                for mid, why in found.stale.items():
                    source = parts[mid]
                    after[mid] = kept(mid, source, why) or made_now(
                        source, {**source[0], "status": "stale", "statusReason": why}
                    )
                for info in found.failed:  # the index keeps an unchanged one: the same object
                    after[info["id"]] = kept(info["id"], info, info.get("statusReason")) or made_now(
                        info, info
                    )
                parts.update({mid: made[1] for mid, made in after.items()})
                self._overlays[folder] = after
                shown = _entry(
                    folder,
                    entry.version,
                    parts,
                    entry.cost,
                    entry.full_at,
                    entry.full_cost,
                    entry.evaluated,
                    (entry.metrics, entry.metrics_json),
                )
            shown.source, shown.files = entry, found.files
            with self._lock:
                self._shown[folder] = shown
            log.debug(
                "lineage of %s: %d stale, %d failed in %.0f ms",
                folder.name,
                len(found.stale),
                len(found.failed),
                1000 * (time.perf_counter() - t0),
            )
            return shown

    def refresh(self, folder: Path, *, full: bool | None = None) -> _Entry:
        """Recompute now (in the caller's thread). `full`: re-read every model (None: when due)."""
        with self._compute_lock:  # one computation at a time: they are CPU-bound anyway
            version = self._data_version(folder)
            with self._lock:
                old = self._entries.get(folder)
            now = time.monotonic()
            if full is None:
                full = old is None or (
                    now - old.full_at > max(_FULL_EVERY_S, 20 * old.full_cost) and not self.busy()
                )
            if old is not None and not full and old.version == version:
                return old
            t0 = time.perf_counter()
            store = self._open_store(folder)
            table = self._tables.get(folder)
            if table is None:
                table = self._tables[folder] = MetricTable()
            if full or old is None:
                self._full_running = old is not None
                try:
                    parts: dict[str, tuple[ModelInfo, str]] = {}
                    ids = self._ids(folder)
                    if old is None:
                        infos = read_lineage(store, table)  # the first time: fastest in total
                    else:
                        # A re-read while serving: model by model, so no single call holds the GIL
                        # long enough to stall the event loop (one bulk metrics query does).
                        infos = [
                            model_info(store.get_model(mid), store.metrics(mid), store.workspace, table)
                            for mid, _parent, _ev in ids
                        ]
                    for info in infos:
                        dumped = _dumps(info)
                        kept = old.parts.get(info["id"]) if old is not None else None
                        # an unchanged model keeps its part object: the drift index and the
                        # overlays tell changed models by identity
                        parts[info["id"]] = kept if kept is not None and kept[1] == dumped else (info, dumped)
                finally:
                    self._full_running = False
                cost = time.perf_counter() - t0
                entry = _entry(
                    folder,
                    version,
                    parts,
                    cost,
                    now,
                    cost,
                    {mid: ev for mid, _p, ev in ids},
                    table.snapshot(),
                )
            else:
                parts = {}
                evaluated: dict[str, str | None] = {}
                for model_id, parent_id, ev in self._ids(folder):
                    part = old.parts.get(model_id)
                    # a re-evaluation keeps id and parent but changes metrics: re-read it too
                    if part is None or part[0]["parent"] != parent_id or old.evaluated.get(model_id) != ev:
                        rec = store.get_model(model_id)
                        info = model_info(rec, store.metrics(model_id), store.workspace, table)
                        part = (info, _dumps(info))
                    parts[model_id] = part
                    evaluated[model_id] = ev
                entry = _entry(
                    folder,
                    version,
                    parts,
                    time.perf_counter() - t0,
                    old.full_at,
                    old.full_cost,
                    evaluated,
                    table.snapshot(),
                )
            with self._lock:
                self._entries[folder] = entry
            log.debug(
                "lineage of %s: %s refresh of %d models in %.0f ms",
                folder.name,
                "full" if full else "incremental",
                len(entry.models),
                1000 * entry.cost,
            )
            return entry

    def _ids(self, folder: Path) -> list[tuple[str, str | None, str | None]]:
        """(id, parent id, evaluation fingerprint) of every complete model in lineage order: one
        small read-only query on a connection of our own (the store's API has no id-only listing)."""
        # The third column tells a changed model apart from its part: its evaluation (re-evaluated:
        # same id, new metrics), the other names it answers to (a variant matched to it) and how many
        # latency measurements it has (bonsai measure: new metrics, nothing else changes).
        rows = (
            self._reader(folder)
            .execute(
                "SELECT id, parent_id, coalesce(eval_fingerprint, '') || coalesce(' = ' || (SELECT group_concat(name, ',') "
                "FROM model_names WHERE model_id = models.id), '') || ' #' || (SELECT count(*) FROM measurements "
                "WHERE model_id = models.id) FROM models WHERE complete = 1 "
                "ORDER BY created, rowid"
            )
            .fetchall()
        )
        return [
            (str(r[0]), None if r[1] is None else str(r[1]), None if r[2] is None else str(r[2]))
            for r in rows
        ]

    def _reader(self, folder: Path) -> sqlite3.Connection:
        """A read-only connection of our own (used under the compute lock)."""
        conn = self._readers.get(folder)
        if conn is None:
            db = folder / BONSAI_DIR / DB_NAME
            conn = self._readers[folder] = sqlite3.connect(
                f"file:{db}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        return conn

    def refresh_later(
        self, folder: Path, then: Callable[[Path], None] | None = None, *, only_if_changed: bool = False
    ) -> None:
        """Queue a recomputation (coalesced with one already queued); `then(folder)` after it."""
        with self._lock:
            waiting = self._pending.get(folder)
            if waiting is not None:
                if then is not None:
                    waiting.append(then)
                return
            self._pending[folder] = [then] if then is not None else []
            before = self._entries.get(folder)

        def run() -> None:
            with self._lock:
                callbacks = self._pending.pop(folder, [])
            try:
                after = self.refresh(folder, full=None)
                changed = before is None or after.data != before.data
            except Exception:
                log.exception("refreshing the lineage of %s failed", folder)
                self.invalidate(folder)
                changed = True
            if changed or not only_if_changed:
                for cb in callbacks:
                    cb(folder)

        try:
            self._worker.submit(run)
        except RuntimeError:  # shutting down
            with self._lock:
                self._pending.pop(folder, None)

    def _data_version(self, folder: Path) -> int:
        with self._lock:
            conn = self._versions.get(folder)
            if conn is None:
                db = folder / BONSAI_DIR / DB_NAME
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, timeout=5)
                self._versions[folder] = conn
            try:
                return int(conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return -1

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for conn in [*self._versions.values(), *self._readers.values()]:
                conn.close()
            self._versions.clear()
            self._readers.clear()
            self._drift.clear()
            self._overlays.clear()
