"""The job queue: heavy work (runs, comparisons) off the event loop, one job at a time per device.

Each device gets one worker thread and a FIFO of jobs. A job moves
``queued -> running -> done | failed | cancelled`` (or ``queued -> cancelled``); every change
calls ``on_change(job)``, which the server turns into ``bonsai/jobChanged`` and work-done
progress. Cancelling sets an event the job's work polls between steps (``JobContext.cancelled``),
so a running job stops at its next step and the engine's atomic writes leave nothing partial.
Nothing here knows about LSP, so it is tested directly as well as through the server.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import BonsaiError, is_user_error
from ..eta import remaining_text
from ..ops.registry import Cancelled
from .protocol import JOB_FINAL_STATES, JobInfo, JobKind, JobState

log = logging.getLogger(__name__)

# Progress changes are passed on at most this often per job (state changes always are).
_PROGRESS_INTERVAL_S = 0.1


class JobCancelled(Cancelled):
    """Raised by :meth:`JobContext.check_cancelled` once the job has been cancelled."""


@dataclass
class Job:
    id: str
    kind: JobKind  # "run": writes the store (delete waits for it); "compare": reads it
    title: str
    device: str
    work: Callable[[JobContext], Any]
    state: JobState = "queued"
    position: int | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: BaseException | None = None
    progress_token: int | str | None = None
    # What the server shows of a running job in the lineage (requests.py sets them for runs):
    # (experiment file, variant) of the models it makes, and model id -> why it remakes that
    # model although it was not asked to
    variants: set[tuple[str, str]] = field(default_factory=set)
    unasked: dict[str, str] = field(default_factory=dict)
    result_id: str | None = None  # a compare job: the result its pages go to
    created: float = field(default_factory=time.time)
    started: float | None = None  # time.monotonic() when it began running (for the estimate)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # the work-done progress the server sent for it (begin once, end once)
    progress_begun: bool = False
    progress_ended: bool = False
    future: Future[Any] = field(default_factory=Future)
    _last_emit: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in JOB_FINAL_STATES

    def info(self) -> JobInfo:
        out: JobInfo = {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state}
        if self.state == "queued" and self.position is not None:
            out["position"] = self.position
        if self.progress is not None:
            out["progress"] = max(0.0, min(1.0, float(self.progress)))
        message = self.message
        if self.state == "running" and self.started is not None and self.progress is not None:
            # a time estimate once a tenth is done, in the message every face shows
            left = remaining_text(time.monotonic() - self.started, self.progress)
            if left is not None:
                message = f"{message} · {left}" if message else left
        if message:
            out["message"] = message
        return out


class JobContext:
    """What a job's work function gets: progress reporting and cancellation polling."""

    def __init__(self, job: Job, queue: JobQueue):
        self._job = job
        self._queue = queue

    @property
    def job(self) -> Job:
        return self._job

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self._queue._progress(self._job, fraction, message)

    def note(self, message: str) -> None:
        """A message every listener must see (progress messages are passed on at most every
        0.1 s, so a quick next one would hide it): what a run does without being asked."""
        self._job.message = message
        self._queue._emit(self._job, force=True)

    def cancelled(self) -> bool:
        return self._job.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()


class JobQueue:
    """One worker thread per device; jobs on the same device run one after another."""

    def __init__(self, on_change: Callable[[Job], None] = lambda job: None, keep_finished: int = 100):
        self._on_change = on_change
        self._keep_finished = keep_finished
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, deque[Job]] = {}
        self._wakeups: dict[str, threading.Condition] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._ids = itertools.count(1)
        self._closed = False

    # -- public -------------------------------------------------------------------------------
    def submit(
        self,
        kind: JobKind,
        title: str,
        work: Callable[[JobContext], Any],
        *,
        device: str = "cpu",
        progress_token: int | str | None = None,
    ) -> Job:
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is shut down")
            job = Job(
                id=f"j{next(self._ids)}",
                kind=kind,
                title=title,
                device=device,
                work=work,
                progress_token=progress_token,
            )
            self._jobs[job.id] = job
            q = self._queues.setdefault(device, deque())
            q.append(job)
            self._renumber(q)
            cond = self._wakeups.setdefault(device, threading.Condition(self._lock))
            if device not in self._workers:
                t = threading.Thread(
                    target=self._worker, args=(device,), name=f"bonsai-jobs-{device}", daemon=True
                )
                self._workers[device] = t
                t.start()
            cond.notify()
            self._forget_old()
        self._emit(job, force=True)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def active(self) -> list[Job]:
        return [j for j in self.jobs() if not j.finished]

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when unknown or already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return False
            job.cancel_event.set()
            q = self._queues.get(job.device)
            if job.state == "queued" and q is not None and job in q:
                q.remove(job)
                self._renumber(q)
                job.state, job.position, job.message = "cancelled", None, "cancelled before it started"
                waiting = list(q)
            else:
                job.message = "cancelling…"
                waiting = []
        if job.state == "cancelled":
            job.future.set_exception(JobCancelled())
        self._emit(job, force=True)
        for other in waiting:
            self._emit(other, force=True)
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel everything and wait (briefly) for the workers to stop."""
        with self._lock:
            self._closed = True
            ids = [j.id for j in self._jobs.values() if not j.finished]
        for job_id in ids:
            self.cancel(job_id)
        with self._lock:
            for cond in self._wakeups.values():
                cond.notify_all()
            workers = list(self._workers.values())
        deadline = time.monotonic() + timeout
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))

    # -- workers ------------------------------------------------------------------------------
    def _worker(self, device: str) -> None:
        while True:
            with self._lock:
                q = self._queues[device]
                cond = self._wakeups[device]
                while not q and not self._closed:
                    cond.wait()
                if not q:
                    return
                job = q.popleft()
                job.state, job.position, job.progress = "running", None, 0.0
                job.started = time.monotonic()
                job.message = None
                waiting = list(q)
                self._renumber(q)
            self._emit(job, force=True)
            for other in waiting:
                self._emit(other, force=True)
            self._run(job)

    def _run(self, job: Job) -> None:
        ctx = JobContext(job, self)
        try:
            if job.cancel_event.is_set():
                raise JobCancelled()
            result = job.work(ctx)
        except Cancelled:
            job.state, job.message = "cancelled", "cancelled"
            job.future.set_exception(JobCancelled())
        except BaseException as e:  # a failing job must never take the server down
            log.warning("job %s (%s) failed", job.id, job.title, exc_info=not is_user_error(e))
            job.state, job.message, job.error = "failed", _describe(e), e
            job.future.set_exception(e)
        else:
            if job.cancel_event.is_set() and job.kind == "compare":
                # A comparison finished in the same instant it was cancelled: honour the cancel.
                job.state, job.message = "cancelled", "cancelled"
                job.future.set_exception(JobCancelled())
            else:
                job.state, job.progress, job.result = "done", 1.0, result
                job.message = job.message if job.message and job.message != "cancelling…" else "done"
                job.future.set_result(result)
        self._emit(job, force=True)

    def _progress(self, job: Job, fraction: float | None, message: str | None) -> None:
        if fraction is not None:
            job.progress = max(0.0, min(1.0, float(fraction)))
        if message:
            job.message = message
        self._emit(job)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _renumber(q: deque[Job]) -> None:
        for i, j in enumerate(q):
            j.position = i + 1

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.finished]
        for j in sorted(done, key=lambda j: j.created)[: max(0, len(done) - self._keep_finished)]:
            del self._jobs[j.id]

    def _emit(self, job: Job, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - job._last_emit < _PROGRESS_INTERVAL_S:
            return
        job._last_emit = now
        try:
            self._on_change(job)
        except Exception:  # a broken listener must not break the job
            log.exception("job listener failed")


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, (BonsaiError, ValueError, OSError, KeyError, RuntimeError)) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
