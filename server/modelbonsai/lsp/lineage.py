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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..store import BONSAI_DIR, LineageStore, MetricRecord, ModelRecord
from ..store.lineage import DB_NAME
from .protocol import LineageResult, MetricInfo, ModelInfo

log = logging.getLogger(__name__)

_REFRESH_S = 3.0


def metric_info(m: MetricRecord) -> MetricInfo | None:
    # JSON has no NaN/Infinity (JSON.parse rejects them): such a metric is left out.
    if not isinstance(m.value, (int, float)) or not math.isfinite(m.value):
        return None
    return {
        "name": m.name,
        "value": float(m.value),
        "unit": m.unit or "",
        "higherIsBetter": bool(m.higher_is_better),
        "headline": bool(m.headline),
    }


def model_info(rec: ModelRecord, metrics: list[MetricRecord], workspace: Path) -> ModelInfo:
    info: ModelInfo = {
        "id": rec.id,
        "name": rec.name,
        "parent": rec.parent_id,
        "op": rec.op,
        "params": _json_safe(rec.params),
        "status": rec.status if rec.status in ("ok", "broken") else "ok",  # type: ignore[typeddict-item]
        "metrics": [mi for mi in (metric_info(m) for m in metrics) if mi is not None],
        "created": datetime.fromtimestamp(rec.created or 0.0, tz=timezone.utc).isoformat(),
    }
    if rec.status_reason:
        info["statusReason"] = rec.status_reason
    if rec.experiment_file and rec.variant:
        file = Path(rec.experiment_file)
        if not file.is_absolute():
            file = workspace / file
        info["experiment"] = {"file": str(file), "variant": rec.variant}
    return info


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def read_lineage(store: LineageStore) -> list[ModelInfo]:
    metrics = store.all_metrics()
    return [model_info(rec, metrics.get(rec.id, []), store.workspace) for rec in store.list_models()]


class RawJSON:
    """A result already serialized: the protocol writes it as is (a 2,000-model lineage is
    megabytes of JSON; encoding it once per change instead of once per request is what keeps a
    flood of lineage requests cheap)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


@dataclass
class _Entry:
    version: int
    at: float
    cost: float  # seconds the last computation took
    models: list[ModelInfo]
    text: str  # '{"folder": ..., "models": [...]}'
    keys: frozenset[tuple[str, str]]  # (experiment file, variant) of every model


# Below this, a changed lineage is recomputed inside the request; above, the request gets the
# previous answer while it is recomputed in the background (and lineageChanged follows).
_SYNC_COST_S = 0.05


class LineageCache:
    """Per-folder cache of the lineage (models and their serialized JSON).

    Recomputations run on one thread of their own and are coalesced: however many models a job
    stores in a burst, at most one recomputation per folder is waiting at any time, and readers
    never queue behind them.
    """

    def __init__(self, open_store: Callable[[Path], LineageStore]):
        self._open_store = open_store
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._entries: dict[Path, _Entry] = {}
        self._versions: dict[Path, sqlite3.Connection] = {}
        # folder -> callbacks of a refresh that is queued but has not started yet
        self._pending: dict[Path, list[Callable[[Path], None]]] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bonsai-lineage")

    def invalidate(self, folder: Path | None = None) -> None:
        with self._lock:
            if folder is None:
                self._entries.clear()
            else:
                self._entries.pop(folder, None)

    def peek(self, folder: Path, on_refreshed: Callable[[Path], None] | None = None) -> _Entry | None:
        """The answer if it can be given without computing (cheap: safe on the event loop).

        A stale answer is given when recomputing is slow (a big store); a refresh is then
        queued and `on_refreshed(folder)` is called if the lineage turned out to differ."""
        if not (folder / BONSAI_DIR / DB_NAME).is_file():
            # never create .bonsai/ just because someone looked
            return _Entry(-1, time.monotonic(), 0.0, [], json.dumps(lineage_result(folder, [])), frozenset())
        version = self._data_version(folder)
        with self._lock:
            entry = self._entries.get(folder)
        if entry is None:
            return None
        stale = entry.version != version
        if stale and entry.cost <= _SYNC_COST_S:
            return None
        # Re-checking artifacts by time costs what a computation costs: at most ~5% of the time.
        if stale or time.monotonic() - entry.at > max(_REFRESH_S, 20 * entry.cost):
            self.refresh_later(folder, on_refreshed, only_if_changed=True)
        return entry

    def get(self, folder: Path, on_refreshed: Callable[[Path], None] | None = None) -> _Entry:
        entry = self.peek(folder, on_refreshed)
        return entry if entry is not None else self.refresh(folder)

    def refresh(self, folder: Path) -> _Entry:
        """Recompute now (in the caller's thread); returns the new entry."""
        with self._compute_lock:  # one computation at a time: they are CPU-bound anyway
            version = self._data_version(folder)
            with self._lock:
                entry = self._entries.get(folder)
            if entry is not None and entry.version == version and time.monotonic() - entry.at < 0.05:
                return entry  # someone else just did it
            t0 = time.perf_counter()
            models = read_lineage(self._open_store(folder))
            text = json.dumps(lineage_result(folder, models), separators=(",", ":"))
            keys = frozenset((m["experiment"]["file"], m["experiment"]["variant"]) for m in models if "experiment" in m)
            entry = _Entry(version, time.monotonic(), time.perf_counter() - t0, models, text, keys)
            with self._lock:
                self._entries[folder] = entry
            return entry

    def refresh_later(self, folder: Path, then: Callable[[Path], None] | None = None, *,
                      only_if_changed: bool = False) -> None:
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
                after = self.refresh(folder)
                changed = before is None or after.text != before.text
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
            for conn in self._versions.values():
                conn.close()
            self._versions.clear()


def lineage_result(folder: Path, models: list[ModelInfo]) -> LineageResult:
    return {"folder": str(folder), "models": models}
