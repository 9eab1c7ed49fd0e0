"""One worker process per device: where the heavy work of jobs actually runs.

Running compression and comparisons in a thread of the server would let them stall the event
loop: much of that work holds the GIL for a long time inside C extensions (measured: stalls of
100-350 ms while pruning, quantizing or measuring). In a child process they cannot, so lineage
and other read requests stay fast however busy the device is; a job that crashes the
interpreter (a segfault in an extension, the OOM killer) fails that job instead of the server.

The job queue's per-device thread hands one task at a time to its device's process and relays
what comes back (progress, stored models, result pages, the outcome). Cancellation sets a
shared event the work polls between steps; a process that ignores it for `KILL_AFTER_S` is
killed and replaced (the store's atomic writes leave nothing partial either way). Setting
BONSAI_LSP_INPROCESS=1 runs tasks in the job thread instead (debugging).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import BonsaiError, error_code, is_user_error
from .jobs import JobCancelled, JobContext

log = logging.getLogger(__name__)

KILL_AFTER_S = 5.0
_PROGRESS_EVERY_S = 0.05


class WorkerFailed(RuntimeError):
    """The task raised something unexpected, or the worker process died."""


class JobError(BonsaiError, ValueError):
    """A Bonsai error the task raised in the worker, raised again in the server with the same
    code (errors.py), so the request is answered as if the engine had raised it in process."""

    user = True

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# -- in the child ---------------------------------------------------------------------------------
class _ChildReporter:
    def __init__(self, conn: Connection, cancel: Any):
        self._conn = conn
        self._cancel = cancel
        self._last = 0.0

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_S and fraction not in (0.0, 1.0):
            return  # the pipe need not carry every tick
        self._last = now
        self._conn.send(("progress", fraction, message))

    def cancelled(self) -> bool:
        return bool(self._cancel.is_set())

    def check_cancelled(self) -> None:
        from ..ops.registry import Cancelled

        if self.cancelled():
            raise Cancelled()

    def lineage_changed(self) -> None:
        self._conn.send(("lineage",))

    def page(self, data: bytes) -> None:
        self._conn.send(("page", data))


def _warm_kernels() -> None:
    try:
        import modelbonsai.artifacts.kernels
        import modelbonsai.compare.kernels  # noqa: F401
    except Exception:  # a job that needs them reports the problem itself
        log.debug("warming the comparison kernels failed", exc_info=True)


def child_main(conn: Connection, cancel: Any) -> None:
    """The worker process: run tasks from `conn` until it closes."""
    import warnings

    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    from ..quiet import quiet_libraries

    quiet_libraries()  # a new process: the libraries' loggers (torchao's, torch's) are set again here
    try:
        # Heavy work yields the CPU to the editor and to the server answering it.
        os.nice(10)
    except (AttributeError, OSError):
        pass
    from ..allocator import keep_freed_memory
    from ..ops.registry import Cancelled
    from .work import TASKS

    keep_freed_memory()  # batches free and allocate the same memory again: keep it (see allocator)

    # The comparison kernels compile on their first import after an install (seconds; numba's
    # cache makes later imports instant): start that now, so a first comparison does not wait.
    threading.Thread(target=_warm_kernels, name="bonsai-warm-kernels", daemon=True).start()
    rep = _ChildReporter(conn, cancel)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        kind, spec = msg
        try:
            result = TASKS[kind](spec, rep)
            conn.send(("done", result))
        except Cancelled:
            conn.send(("cancelled",))
        except BaseException as e:
            if is_user_error(e):
                # The user's to fix: its message, no traceback; its code when it has a Bonsai class
                conn.send(("error", "user", str(e), error_code(e)))
            else:
                conn.send(("error", "internal", f"{type(e).__name__}: {e}", traceback.format_exc()))


# -- in the server ----------------------------------------------------------------------------------
class Worker:
    """The process of one device, used by that device's job thread only."""

    def __init__(self, device: str):
        self.device = device
        self._ctx = mp.get_context("spawn")  # never fork a process that has threads
        self._proc: Any = None
        self._conn: Connection | None = None
        self._cancel: Any = None

    def _ensure(self) -> Connection:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            return self._conn
        self.close()
        parent, child = self._ctx.Pipe()
        self._cancel = self._ctx.Event()
        self._proc = self._ctx.Process(
            target=child_main, args=(child, self._cancel), daemon=True, name=f"bonsai-worker-{self.device}"
        )
        self._proc.start()
        child.close()
        self._conn = parent
        return parent

    def run(
        self,
        kind: str,
        spec: dict[str, Any],
        ctx: JobContext,
        on_lineage: Callable[[], None] = lambda: None,
        on_page: Callable[[bytes], None] = lambda data: None,
    ) -> Any:
        conn = self._ensure()
        self._cancel.clear()
        conn.send((kind, spec))
        cancel_at: float | None = None
        msg: Any
        while True:
            if ctx.cancelled() and cancel_at is None:
                self._cancel.set()
                cancel_at = time.monotonic()
            if cancel_at is not None and time.monotonic() - cancel_at > KILL_AFTER_S:
                log.warning(
                    "worker %s ignored the cancel for %.0f s; restarting it", self.device, KILL_AFTER_S
                )
                self.close(kill=True)
                raise JobCancelled()
            try:
                ready = conn.poll(0.05)
                msg = conn.recv() if ready else None
            except (EOFError, OSError):
                msg = ("died",)
            if msg is None:
                if not self._proc.is_alive():
                    msg = ("died",)
                else:
                    continue
            tag = msg[0]
            if tag == "progress":
                ctx.progress(msg[1], msg[2])
            elif tag == "lineage":
                on_lineage()
            elif tag == "page":
                on_page(msg[1])
            elif tag == "done":
                return msg[1]
            elif tag == "cancelled":
                raise JobCancelled()
            elif tag == "error":
                if msg[1] == "user":
                    code = msg[3] if len(msg) > 3 else None
                    # Without a Bonsai class (a library's ValueError): a ValueError, as in process
                    raise ValueError(msg[2]) if code is None else JobError(msg[2], code)
                log.warning("job failed in worker %s:\n%s", self.device, msg[3] if len(msg) > 3 else msg[2])
                raise WorkerFailed(msg[2])
            elif tag == "died":
                code = self._proc.exitcode if self._proc is not None else None
                self.close(kill=True)
                raise WorkerFailed(
                    f"the worker process died (exit code {code}); it is restarted for the next job"
                )

    def close(self, kill: bool = False) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                if not kill:
                    conn.send(None)
            except (OSError, ValueError):
                pass
        if proc is not None:
            proc.join(0 if kill else 2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        if conn is not None:
            conn.close()


class _ThreadReporter:
    def __init__(self, ctx: JobContext, on_lineage: Callable[[], None], on_page: Callable[[bytes], None]):
        self.progress = ctx.progress
        self.cancelled = ctx.cancelled
        self.check_cancelled = ctx.check_cancelled
        self.lineage_changed = on_lineage
        self.page = on_page


class Workers:
    """The worker of every device, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, Worker] = {}
        self.in_process = os.environ.get("BONSAI_LSP_INPROCESS") == "1"

    def run(
        self,
        kind: str,
        spec: dict[str, Any],
        ctx: JobContext,
        on_lineage: Callable[[], None] = lambda: None,
        on_page: Callable[[bytes], None] = lambda data: None,
    ) -> Any:
        if self.in_process:
            from ..ops.registry import Cancelled
            from .work import TASKS

            try:
                return TASKS[kind](spec, _ThreadReporter(ctx, on_lineage, on_page))
            except Cancelled:
                raise JobCancelled() from None
        device = ctx.job.device
        with self._lock:
            worker = self._workers.get(device)
            if worker is None:
                worker = self._workers[device] = Worker(device)
        return worker.run(kind, spec, ctx, on_lineage, on_page)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.close()
