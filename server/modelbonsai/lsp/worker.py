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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..errors import BonsaiError, error_code, is_user_error
from ..service import JobSpec, RunPlanned
from .jobs import JobCancelled, JobContext

if TYPE_CHECKING:
    from ..runner import RunEvent

log = logging.getLogger(__name__)

KILL_AFTER_S = 5.0
_PROGRESS_EVERY_S = 0.05
R = TypeVar("R")


class WorkerFailed(RuntimeError):
    """The task raised something unexpected, or the worker process died."""


class JobError(BonsaiError, ValueError):
    """A Bonsai error the task raised in the worker, raised again in the server with the same
    code (errors.py), so the request is answered as if the engine had raised it in process."""

    user = True

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# -- the pipe: the server sends a job spec (service/jobs.py) or None (stop); the worker answers
# with these, sent as they are (pickled dataclasses), ending each job with Done, Stopped or Failed.
@dataclass(frozen=True)
class Progress:
    fraction: float | None
    message: str | None


@dataclass(frozen=True)
class LineageChanged:
    pass


@dataclass(frozen=True)
class Page:
    data: bytes


@dataclass(frozen=True)
class Done:
    result: Any  # what the spec's handler returned (JobSpec[R]: an R)


@dataclass(frozen=True)
class Stopped:
    """The job saw its cancel and stopped."""


@dataclass(frozen=True)
class Failed:
    message: str
    user: bool  # the user's to fix (errors.is_user_error): the message, no traceback
    code: int | None = None  # a Bonsai error's JSON-RPC code (None: a library's ValueError)
    traceback: str = ""


FromWorker = Progress | LineageChanged | Page | RunPlanned | Done | Stopped | Failed


# -- in the child ---------------------------------------------------------------------------------
class _ChildReporter:
    """The service's Reporter in the worker: every report becomes one pipe message."""

    def __init__(self, conn: Connection, cancel: Any):
        self._conn = conn
        self._cancel = cancel
        self._last = 0.0

    def _send(self, msg: FromWorker) -> None:
        self._conn.send(msg)

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY_S and fraction not in (0.0, 1.0):
            return  # the pipe need not carry every tick
        self._last = now
        self._send(Progress(fraction, message))

    def cancelled(self) -> bool:
        return bool(self._cancel.is_set())

    def check_cancelled(self) -> None:
        from ..ops.registry import Cancelled

        if self.cancelled():
            raise Cancelled()

    def lineage_changed(self) -> None:
        self._send(LineageChanged())

    def page(self, data: bytes) -> None:
        self._send(Page(data))

    def planned(self, plan: RunPlanned) -> None:
        self._send(plan)

    def run_event(self, event: RunEvent) -> None:
        pass  # the server follows a run through lineage_changed and progress


def _warm_kernels() -> None:
    try:
        import modelbonsai.artifacts.kernels
        import modelbonsai.compare.kernels  # noqa: F401
    except Exception:  # a job that needs them reports the problem itself
        log.debug("warming the comparison kernels failed", exc_info=True)


def _outcome(job: JobSpec[Any], rep: _ChildReporter) -> FromWorker:
    """Do one job; the message that ends it."""
    from ..ops.registry import Cancelled
    from ..service import handle

    try:
        return Done(handle(job, rep))
    except Cancelled:
        return Stopped()
    except BaseException as e:
        if is_user_error(e):
            # The user's to fix: its message, no traceback; its code when it has a Bonsai class
            return Failed(str(e), user=True, code=error_code(e))
        return Failed(f"{type(e).__name__}: {e}", user=False, traceback=traceback.format_exc())


def child_main(conn: Connection, cancel: Any) -> None:
    """The worker process: run jobs from `conn` until it closes."""
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

    keep_freed_memory()  # batches free and allocate the same memory again: keep it (see allocator)

    # The comparison kernels compile on their first import after an install (seconds; numba's
    # cache makes later imports instant): start that now, so a first comparison does not wait.
    threading.Thread(target=_warm_kernels, name="bonsai-warm-kernels", daemon=True).start()
    rep = _ChildReporter(conn, cancel)
    while True:
        try:
            job: JobSpec[Any] | None = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(_outcome(job, rep))


# -- in the server ----------------------------------------------------------------------------------
@dataclass
class Listeners:
    """What the server does with a job's reports besides its progress (each optional)."""

    lineage: Callable[[], None] = lambda: None
    page: Callable[[bytes], None] = lambda data: None
    planned: Callable[[RunPlanned], None] = lambda plan: None


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

    def _next(self, conn: Connection) -> FromWorker | None:
        """The worker's next message, None when there is none yet; a dead worker fails the job."""
        try:
            if conn.poll(0.05):
                return cast(FromWorker, conn.recv())
        except (EOFError, OSError):
            pass
        else:
            if self._proc.is_alive():
                return None
        code = self._proc.exitcode if self._proc is not None else None
        self.close(kill=True)
        raise WorkerFailed(f"the worker process died (exit code {code}); it is restarted for the next job")

    def run(self, job: JobSpec[R], ctx: JobContext, listen: Listeners | None = None) -> R:
        listen = listen or Listeners()
        conn = self._ensure()
        self._cancel.clear()
        conn.send(job)
        cancel_at: float | None = None
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
            match self._next(conn):
                case None:
                    continue
                case Progress(fraction, message):
                    ctx.progress(fraction, message)
                case LineageChanged():
                    listen.lineage()
                case Page(data):
                    listen.page(data)
                case RunPlanned() as plan:
                    listen.planned(plan)
                case Done(result):
                    return cast(R, result)
                case Stopped():
                    raise JobCancelled()
                case Failed(message, user=True, code=code):
                    # Without a Bonsai class (a library's ValueError): a ValueError, as in process
                    raise ValueError(message) if code is None else JobError(message, code)
                case Failed(message, traceback=tb):
                    log.warning("job failed in worker %s:\n%s", self.device, tb or message)
                    raise WorkerFailed(message)

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
    """The service's Reporter for a job run in the server process (BONSAI_LSP_INPROCESS=1)."""

    def __init__(self, ctx: JobContext, listen: Listeners):
        self._ctx = ctx
        self._listen = listen

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self._ctx.progress(fraction, message)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancelled(self) -> None:
        self._ctx.check_cancelled()

    def lineage_changed(self) -> None:
        self._listen.lineage()

    def page(self, data: bytes) -> None:
        self._listen.page(data)

    def planned(self, plan: RunPlanned) -> None:
        self._listen.planned(plan)

    def run_event(self, event: RunEvent) -> None:
        pass


class Workers:
    """The worker of every device, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, Worker] = {}
        self.in_process = os.environ.get("BONSAI_LSP_INPROCESS") == "1"

    def run(self, job: JobSpec[R], ctx: JobContext, listen: Listeners | None = None) -> R:
        """Do `job` on the device of `ctx`'s job and return what its handler returned; raises
        JobCancelled, JobError (a Bonsai error, its code kept), ValueError or WorkerFailed."""
        if self.in_process:
            from ..ops.registry import Cancelled
            from ..service import handle

            try:
                return handle(job, _ThreadReporter(ctx, listen or Listeners()))
            except Cancelled:
                raise JobCancelled() from None
        device = ctx.job.device
        with self._lock:
            worker = self._workers.get(device)
            if worker is None:
                worker = self._workers[device] = Worker(device)
        return worker.run(job, ctx, listen)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for w in workers:
            w.close()
