"""Large results on the LSP hop: msgpack pages held by id, sent inline (base64) or through files.

A result is a list of msgpack pages (the wire envelope of ``modelbonsai.wire``). Page `n` goes
back inline as base64 when it is at most :data:`protocol.MAX_INLINE_PAGE_BYTES`; a bigger page is
written atomically (temp file + rename) under ``<storagePath>/results/`` and the response gives
its path, size and sha256, so the extension reads it from disk instead of through JSON.

A result that is still being computed can be asked for already: its pages so far are served
(``done: false``), and asking for a page not yet there waits until it arrives or the result ends.
Result files are removed when the server shuts down, and any older than ``max_age_s`` on a sweep.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..store.fsio import atomic_write_bytes
from .jobs import JobCancelled
from .protocol import MAX_INLINE_PAGE_BYTES, ResultRef

log = logging.getLogger(__name__)


class ResultNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "result not found"


@dataclass
class _Result:
    id: str
    job_id: str | None = None  # the job computing it: clients cancel by this id
    pages: list[bytes] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    cancelled: bool = False
    waiters: list[tuple[int, Future[None]]] = field(default_factory=list)
    files: dict[int, Path] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.pages)


class ResultStore:
    """Results by id (an LRU bounded by total bytes), and the files written for big pages."""

    def __init__(
        self,
        storage_path: Path | None,
        *,
        inline_limit: int = MAX_INLINE_PAGE_BYTES,
        max_bytes: int = 1 << 30,
        max_age_s: float = 30 * 60,
    ):
        self.storage_path = storage_path
        self.inline_limit = inline_limit
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._results: OrderedDict[str, _Result] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path | None:
        return None if self.storage_path is None else self.storage_path / "results"

    # -- producing ----------------------------------------------------------------------------
    def new(self) -> str:
        result = _Result(id=secrets.token_hex(8))
        with self._lock:
            self._results[result.id] = result
            self._evict()
        return result.id

    def attach_job(self, result_id: str, job_id: str) -> None:
        """Record which job computes this result (every ref then names it, for bonsai/cancel)."""
        self._get(result_id).job_id = job_id

    def add_page(self, result_id: str, page: bytes) -> None:
        result = self._get(result_id)
        with result.cond:
            result.pages.append(bytes(page))
            result.cond.notify_all()
            self._wake(result)
        with self._lock:
            self._evict(keep=result_id)

    def finish(self, result_id: str, error: str | None = None, *, cancelled: bool = False) -> None:
        result = self._get(result_id)
        with result.cond:
            result.done, result.error, result.cancelled = True, error, cancelled
            result.cond.notify_all()
            self._wake(result)

    def wait_page(self, result_id: str, page: int) -> Future[None]:
        """A future done once page `page` exists or the result has ended (either way: ask ref)."""
        result = self._get(result_id)
        fut: Future[None] = Future()
        with result.cond:
            if page < len(result.pages) or result.done:
                fut.set_result(None)
            else:
                result.waiters.append((page, fut))
        return fut

    @staticmethod
    def _wake(result: _Result) -> None:
        keep = []
        for page, fut in result.waiters:
            if page < len(result.pages) or result.done:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((page, fut))
        result.waiters = keep

    def put(self, pages: list[bytes]) -> str:
        """A complete result at once; returns its id."""
        rid = self.new()
        for p in pages:
            self.add_page(rid, p)
        self.finish(rid)
        return rid

    # -- serving ------------------------------------------------------------------------------
    def ref(self, result_id: str, page: int, *, wait_s: float = 60.0) -> ResultRef:
        """Page `page` of a result, waiting up to `wait_s` while it is still being computed."""
        result = self._get(result_id)
        deadline = time.monotonic() + wait_s
        with result.cond:
            while page >= len(result.pages) and not result.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                result.cond.wait(left)
            if result.error is not None and page >= len(result.pages):
                if result.cancelled:
                    raise JobCancelled()
                raise RuntimeError(result.error)
            count = len(result.pages)
            if page < 0:
                raise ResultNotFound(f"result {result_id}: page numbers start at 0, got {page}")
            done = result.done
            data = result.pages[page] if page < count else None
        ref: ResultRef = {"resultId": result_id, "page": page, "pages": count, "done": done}
        if result.job_id is not None:
            ref["jobId"] = result.job_id
        if data is None:
            # Still computing (timed out waiting), or past the last page of a finished result:
            # `done` and `pages` tell the client which, and a client that read ahead stops here.
            return ref
        if len(data) <= self.inline_limit:
            ref["data"] = base64.b64encode(data).decode("ascii")
        else:
            path = self._file_for(result, page, data)
            ref["file"] = {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return ref

    def _file_for(self, result: _Result, page: int, data: bytes) -> Path:
        if page in result.files and result.files[page].is_file():
            return result.files[page]
        folder = self.folder
        if folder is None:
            raise RuntimeError(
                f"this result page is {len(data) / 1e6:.1f} MB, more than the {self.inline_limit / 1e6:.0f} MB "
                "sent inline, and the client gave no storagePath at initialize to write it to"
            )
        final = folder / f"{result.id}-{page}.msgpack"
        atomic_write_bytes(final, data)  # readers see no file or the whole file, never half of it
        result.files[page] = final
        return final

    # -- cleaning -----------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Remove result files older than max_age_s (from this or an earlier server)."""
        folder = self.folder
        if folder is None or not folder.is_dir():
            return 0
        now = time.time() if now is None else now
        removed = 0
        for p in folder.iterdir():
            try:
                if p.is_file() and now - p.stat().st_mtime > self.max_age_s:
                    p.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def close(self) -> None:
        """Drop every result and delete every file this server wrote."""
        with self._lock:
            results = list(self._results.values())
            self._results.clear()
        for r in results:
            self._unlink(r)

    def _get(self, result_id: str) -> _Result:
        with self._lock:
            result = self._results.get(result_id)
            if result is None:
                raise ResultNotFound(f"no result '{result_id}' (it may have expired; ask again)")
            self._results.move_to_end(result_id)
            return result

    def _evict(self, keep: str | None = None) -> None:
        total = sum(r.nbytes for r in self._results.values())
        for rid in list(self._results):
            if total <= self.max_bytes:
                break
            if rid == keep:
                continue
            r = self._results.pop(rid)
            total -= r.nbytes
            self._unlink(r)

    @staticmethod
    def _unlink(result: _Result) -> None:
        for p in result.files.values():
            try:
                p.unlink()
            except OSError:
                pass
