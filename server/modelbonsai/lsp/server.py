"""The Bonsai language server (pygls 2, stdio): custom requests, jobs, progress, language features.

`main()` is what `bonsai serve` runs. Before anything else it moves the real stdout aside for
JSON-RPC and points file descriptor 1 (and `sys.stdout`) at stderr, so a stray print or a C
library writing to fd 1 cannot corrupt the stream; library progress bars and warnings are
silenced and pygls logs at WARNING.

Threads: the asyncio loop reads stdin and answers cheap requests; read requests that touch the
store run in a small pool of their own (never the pool pygls reads stdin with); heavy work runs
in the job queue (one worker per device). Everything sent to the client from another thread is
handed to the loop first, so messages never interleave on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lsprotocol import converters
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
)
from pygls.uris import to_fs_path

from .. import __version__
from ..errors import BonsaiError
from ..store import LineageStore
from . import protocol as P
from . import stdio
from .jobs import Job, JobCancelled, JobContext, JobQueue
from .lineage import LineageCache, RawJSON
from .results import ResultNotFound, ResultStore
from .worker import Workers

if TYPE_CHECKING:
    from .features import Documents

log = logging.getLogger("modelbonsai.lsp")
LENS_REFRESH_DELAY_S = 0.3
T = TypeVar("T")
#: a request's params: the protocol.py TypedDict its method declares
ParamsT = TypeVar("ParamsT", bound=Mapping[str, Any])
ResultT = TypeVar("ResultT")


class RequestError(JsonRpcException):
    """An error response with one of protocol.py's codes and a message meant for the user."""

    def __init__(self, code: int, message: str):
        super().__init__(message=message, code=code)


def request_error(e: Exception, method: str) -> JsonRpcException:
    """The error response for what a request handler raised: mapped by the error's class.

    Bonsai's errors carry their code (errors.py); a cancelled job answers -32800; an unknown
    result or file NOT_FOUND. Exceptions of no Bonsai class: a ValueError with a message is the
    user's (USER_ERROR; the comparisons' guard answers JOB_FAILED first: their job found it);
    anything else is an internal error, logged with its traceback."""
    if isinstance(e, JsonRpcException):
        return e
    if isinstance(e, JobCancelled):
        return RequestError(P.REQUEST_CANCELLED, f"{method}: cancelled")
    if isinstance(e, (ResultNotFound, FileNotFoundError)):
        return RequestError(P.NOT_FOUND, str(e))
    if isinstance(e, BonsaiError) and e.user:
        return RequestError(e.code, str(e))
    if isinstance(e, ValueError):
        return RequestError(P.USER_ERROR, str(e))
    log.error("%s failed", method, exc_info=e)
    return RequestError(P.INTERNAL_ERROR, f"{method} failed: {type(e).__name__}: {e}")


@dataclass
class Settings:
    storage_path: Path | None = None
    device: str = "auto"
    max_instances: int | None = None
    trusted: bool = False  # until the client says so, assume the restricted mode


@dataclass
class _Unparsable:
    """A request whose params pygls could not structure: answered with its error, by id."""

    id: int | str | None
    error: JsonRpcException
    jsonrpc: str = "2.0"


def send_error(protocol: LanguageServerProtocol, msg_id: int | str | None, code: int, message: str) -> None:
    """An error response written as plain JSON, so a null id stays in it (JSON-RPC wants
    `"id": null` when the request's id could not be read; pygls' serializer drops null fields)."""
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


class BonsaiProtocol(LanguageServerProtocol):
    """pygls' protocol, made robust: every bad request gets an error response."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if isinstance(data, dict) and "id" in data and "method" in data:
                return _Unparsable(id=data["id"], error=e)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unparsable):
            # JSON-RPC answers a request whose id could not be read with a null id, which pygls'
            # MsgId (int | str) does not admit
            self._send_response(message.id, error=message.error.to_response_error())  # type: ignore[arg-type]
            return
        if not hasattr(message, "jsonrpc"):  # valid JSON, but not a JSON-RPC message at all
            msg_id = message.get("id") if isinstance(message, dict) else None
            send_error(
                self,
                msg_id if isinstance(msg_id, (int, str)) else None,
                P.INVALID_REQUEST,
                "not a JSON-RPC 2.0 message (an object with 'jsonrpc' and 'method')",
            )
            return
        super().handle_message(message)

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if error is None and isinstance(result, RawJSON):
            self._result_types.pop(msg_id, None)
            head = f'{{"jsonrpc":"2.0","id":{json.dumps(msg_id)},"result":'.encode()
            size = len(head) + len(result.data) + 1
            header = (
                f"Content-Length: {size}\r\nContent-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n"
            ).encode()
            if self.writer is not None:
                self.writer.write(b"".join((header, head, result.data, b"}")))
            return
        super()._send_response(msg_id, result, error)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        # `$/cancelRequest` for a request that started a job cancels the job itself, even after
        # the request was answered (bonsai/run answers at once with the job id).
        server = cast(BonsaiServer, self._server)  # pygls types it as the base LanguageServer
        job_id = server.request_jobs.get(msg_id)
        if job_id is not None:
            server.jobs.cancel(job_id)
        super()._handle_cancel_notification(msg_id)


def _converter() -> Any:
    # pygls turns the params of methods it has no type for into namedtuples (renaming keys that
    # are not identifiers); Bonsai's custom methods want the JSON as it came, checked by
    # protocol.check.
    conv = converters.get_converter()

    def keep_params(obj: dict[str, Any], cls: type) -> Any:
        return cls(**{"params": None, **obj})

    def keep_result(obj: dict[str, Any], cls: type) -> Any:
        return cls(**{"result": None, **obj})

    conv.register_structure_hook(JsonRPCRequestMessage, keep_params)
    conv.register_structure_hook(JsonRPCNotification, keep_params)
    conv.register_structure_hook(JsonRPCResponseMessage, keep_result)
    return conv


class BonsaiServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "bonsai",
            __version__,
            protocol_cls=BonsaiProtocol,
            converter_factory=_converter,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
        )
        self.settings = Settings()
        self._lens_refresh_handle: asyncio.TimerHandle | None = None
        self.jobs = JobQueue(on_change=self._job_changed)
        self.workers = Workers()
        self.results = ResultStore(None)
        self.read_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bonsai-read")
        self.request_jobs: dict[Any, str] = {}  # request id -> job id ($/cancelRequest)
        self.token_jobs: dict[Any, str] = {}  # work-done token -> job id (progress cancel)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stores: dict[Path, LineageStore] = {}
        self._stores_lock = threading.Lock()
        # stale statuses are judged for the instance limit this server's runs use
        self.lineage = LineageCache(
            self.store, busy=lambda: bool(self.jobs.active()), limit=lambda: self.settings.max_instances
        )
        self.job_folders: dict[str, Path] = {}
        self.documents: Documents | None = None  # the open experiment files (features.register)
        self._sweeper: asyncio.TimerHandle | None = None

    # -- threads and the loop -----------------------------------------------------------------
    def on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the event loop thread (safe to call from any thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        if threading.current_thread() is threading.main_thread() and _running_loop() is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    async def in_reader(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.read_pool, fn, *args)

    def notify(self, method: str, params: Any) -> None:
        self.on_loop(self.protocol.notify, method, params)

    # -- folders and stores -------------------------------------------------------------------
    def folders(self) -> list[Path]:
        out = []
        for f in self.workspace.folders.values():
            try:
                out.append(Path(to_fs_path(f.uri) or f.uri).resolve())
            except Exception:
                continue
        if not out and self.workspace.root_path:
            out.append(Path(self.workspace.root_path).resolve())
        return out

    def folder_for(self, given: str | None = None, *, file: Path | None = None) -> Path:
        """The workspace folder a request means: given (path or URI), holding `file`, or the first."""
        if given:
            path = as_path(given)
            if not path.is_dir():
                raise RequestError(P.NOT_FOUND, f"folder {path} does not exist")
            return path
        folders = self.folders()
        if file is not None:
            for f in sorted(folders, key=lambda p: len(str(p)), reverse=True):
                if file == f or f in file.parents:
                    return f
            return file.parent
        if not folders:
            raise RequestError(P.NOT_FOUND, "no workspace folder is open")
        return folders[0]

    def store(self, folder: Path) -> LineageStore:
        with self._stores_lock:
            store = self._stores.get(folder)
            if store is None:
                store = LineageStore.open(folder)
                self._stores[folder] = store
            return store

    def lineage_changed(self, folder: Path) -> None:
        """The lineage of `folder` changed (a model stored or deleted): recompute it off the loop,
        then tell the client, so the request it sends next gets the new lineage at once."""
        self.lineage.refresh_later(folder, self.notify_lineage)

    def notify_lineage(self, folder: Path) -> None:
        self.notify(P.LINEAGE_CHANGED, {"folder": str(folder)})
        if self.client_supports_lens_refresh():
            self.on_loop(self._schedule_lens_refresh)

    def _schedule_lens_refresh(self) -> None:
        # A run stores models in bursts; one refresh after the burst settles, instead of several
        # within a millisecond, which VS Code may drop while its own lens request is in flight.
        if self._lens_refresh_handle is not None:
            self._lens_refresh_handle.cancel()
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        self._lens_refresh_handle = loop.call_later(LENS_REFRESH_DELAY_S, self._refresh_lenses)

    def _refresh_lenses(self) -> None:
        self._lens_refresh_handle = None
        try:
            self.workspace_code_lens_refresh(None)
        except Exception:  # an old client without the refresh request: nothing to do
            log.debug("codeLens refresh failed", exc_info=True)

    def client_supports_lens_refresh(self) -> bool:
        try:
            ws = self.client_capabilities.workspace
            return bool(ws and ws.code_lens and ws.code_lens.refresh_support)
        except Exception:
            return False

    # -- jobs ---------------------------------------------------------------------------------
    def device(self) -> str:
        """The device jobs run on (the `device` setting resolved: "auto" picks one)."""
        from ..device import resolve_device

        return str(resolve_device(self.settings.device))  # a DeviceError is the user's to fix

    def submit(
        self,
        kind: P.JobKind,
        title: str,
        work: Callable[[JobContext], Any],
        *,
        token: Any = None,
        folder: Path | None = None,
        device: str | None = None,
    ) -> Job:
        """Queue `work` on `device` (default: the server's); `folder`: the workspace folder a
        "run" job writes (its lineage is refreshed when it ends, and delete waits for it)."""
        job = self.jobs.submit(kind, title, work, device=device or self.device(), progress_token=token)
        if token is not None:
            self.token_jobs[token] = job.id
        if folder is not None:
            self.job_folders[job.id] = folder
        msg_id = self.protocol.msg_id
        if msg_id is not None:
            self.request_jobs[msg_id] = job.id
        return job

    def _job_changed(self, job: Job) -> None:
        info = job.info()
        self.notify(P.JOB_CHANGED, {"job": info})
        token = job.progress_token
        if token is not None:
            self.on_loop(self._send_progress, job, token, P.JobInfo(**info))  # a copy
        if job.finished:
            self.on_loop(self._forget_job, job)

    def _send_progress(self, job: Job, token: Any, info: P.JobInfo) -> None:
        progress = self.work_done_progress
        state = info["state"]
        pct = None if info.get("progress") is None else round(100 * float(info["progress"]))
        message = info.get("message")
        if state == "queued":
            message = f"queued (position {info.get('position', '?')})"
        started = job.progress_begun
        if not started:
            job.progress_begun = True
            progress.begin(
                token,
                lsp.WorkDoneProgressBegin(
                    title=job.title, cancellable=True, message=message, percentage=pct or 0
                ),
            )
        if state in P.JOB_FINAL_STATES:
            if not job.progress_ended:
                job.progress_ended = True
                progress.end(token, lsp.WorkDoneProgressEnd(message=message or state))
        elif started:
            progress.report(
                token, lsp.WorkDoneProgressReport(message=message, percentage=pct, cancellable=True)
            )

    def _forget_job(self, job: Job) -> None:
        if job.progress_token is not None:
            self.token_jobs.pop(job.progress_token, None)
            self.work_done_progress.tokens.pop(job.progress_token, None)
        for k in [k for k, v in self.request_jobs.items() if v == job.id]:
            self.request_jobs.pop(k, None)
        folder = self.job_folders.pop(job.id, None)
        if folder is not None and job.kind == "run":
            self.lineage_changed(folder)

    def serve_stdio(self, stdin: Any, stdout: Any) -> None:
        """Like pygls' start_io, with the forgiving reader of stdio.py."""
        self._stop_event = threading.Event()
        reader = StdinAsyncReader(stdin, self.thread_pool)
        self.protocol.set_writer(StdoutWriter(stdout))
        try:
            stdio.run(self._stop_event, reader, self.protocol, self.report_server_error)
        except BrokenPipeError:
            log.error("the client closed the connection; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    # -- errors -------------------------------------------------------------------------------
    def report_server_error(self, error: Exception, source: Any) -> None:
        if isinstance(error, ValueError) and source is JsonRpcException:
            # pygls could not even decode the frame (bad JSON, bad UTF-8): JSON-RPC says answer
            # with a parse error and a null id, and keep serving.
            send_error(self.protocol, None, P.PARSE_ERROR, f"Parse error: {error}")
            return
        log.warning("server error (%s): %s", getattr(source, "__name__", source), error)

    def shutdown_resources(self) -> None:
        self.jobs.shutdown()
        self.workers.close()
        self.results.close()
        self.lineage.close()
        self.read_pool.shutdown(wait=False, cancel_futures=True)
        with self._stores_lock:
            for s in self._stores.values():
                try:
                    s.close()
                except Exception:
                    pass
            self._stores.clear()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: The longest path and file name the OS takes (Linux's PATH_MAX and NAME_MAX, in bytes); the
#: file systems of the other platforms allow less.
_PATH_MAX, _NAME_MAX = 4096, 255


def as_path(uri_or_path: str) -> Path:
    """A file URI or a plain path as an absolute Path. A string that cannot be a path (too long,
    a name too long, a NUL character) is invalid params: the request is malformed, whatever is on
    disk (the OS would refuse it with an error that reads like a server fault)."""
    text = uri_or_path.strip()
    if text.startswith("file:"):
        fs = to_fs_path(text)
        if fs is None:
            raise RequestError(P.USER_ERROR, f"'{_clip(text)}' is not a file URI of this machine")
        text = fs
    if "\x00" in text:
        raise RequestError(P.INVALID_PARAMS, f"'{_clip(text)}' is not a path: it contains a NUL character")
    encoded = text.encode("utf-8", "surrogateescape")
    if len(encoded) > _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
        raise RequestError(
            P.INVALID_PARAMS, f"'{_clip(text)}' is not a path: it is too long ({len(text):,} characters)"
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # `~someone` with no such user: taken as written
        path = Path(text)
    return path.resolve()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


# ---------------------------------------------------------------------------------------------
# Request plumbing
# ---------------------------------------------------------------------------------------------
#: a custom request's handler: its method's params shape in, its result shape out (protocol.py)
Handler = Callable[[BonsaiServer, ParamsT], Awaitable[ResultT]]


def _plain(params: Any) -> Any:
    if params is None:
        return {}
    if hasattr(params, "__attrs_attrs__"):
        from lsprotocol import converters

        return converters.get_converter().unstructure(params)
    return params


def custom(
    server: BonsaiServer, method: str
) -> Callable[[Handler[ParamsT, ResultT]], Handler[ParamsT, ResultT]]:
    """Register `fn` for a protocol.py method: shape check, trust check, errors mapped to codes.
    `fn` takes the method's declared params (a TypedDict) and returns its declared result."""
    meta = P.METHODS[method]

    def decorate(fn: Handler[ParamsT, ResultT]) -> Handler[ParamsT, ResultT]:
        async def handler(params: Any) -> Any:
            data = _plain(params)
            try:
                P.check(data, meta.params, "params")
            except P.ShapeError as e:
                raise JsonRpcInvalidParams(message=f"{method}: {e}") from None
            if meta.needs_trust and not server.settings.trusted:
                raise RequestError(P.WORKSPACE_UNTRUSTED, P.UNTRUSTED_MESSAGE)
            try:
                # checked against meta.params just above: the declared shape, as the handler says
                return await fn(server, cast(ParamsT, data))
            except Exception as e:
                raise request_error(e, method) from None

        server.feature(method)(handler)
        return fn

    return decorate


def work_done_token(params: Mapping[str, object]) -> P.ProgressToken | None:
    """The work-done token LSP lets a client add to any request's params (declared or not)."""
    token = params.get("workDoneToken")
    return token if isinstance(token, (int, str)) else None


async def await_job(job: Job) -> Any:
    """Wait for a job without blocking the loop; raises what the job raised."""
    return await asyncio.wrap_future(job.future)


def wrap_future(fut: Future[T]) -> Awaitable[T]:
    return asyncio.wrap_future(fut)


# ---------------------------------------------------------------------------------------------
# Building the server
# ---------------------------------------------------------------------------------------------
def create_server() -> BonsaiServer:
    server = BonsaiServer()
    _register_lifecycle(server)
    _register_core(server)
    from . import compare_requests, features, requests, scan_requests

    requests.register(server)
    compare_requests.register(server)
    scan_requests.register(server)
    features.register(server)
    return server


def _register_lifecycle(server: BonsaiServer) -> None:
    @server.feature(lsp.INITIALIZE)
    def initialize(params: lsp.InitializeParams) -> None:
        server.loop = _running_loop()
        opts = params.initialization_options
        s = server.settings
        if isinstance(opts, dict):
            try:
                P.check(opts, P.InitializationOptions, "initializationOptions")
            except P.ShapeError as e:
                log.warning("ignoring bad initializationOptions: %s", e)
                opts = {k: v for k, v in opts.items() if k in P.InitializationOptions.__annotations__}
            if isinstance(opts.get("storagePath"), str) and opts["storagePath"]:
                s.storage_path = Path(opts["storagePath"]).expanduser()
            if opts.get("device") in ("auto", "cpu", "cuda", "mps"):
                s.device = opts["device"]
            mi = opts.get("maxInstances")
            if isinstance(mi, int) and not isinstance(mi, bool) and mi > 0:
                s.max_instances = mi
            s.trusted = opts.get("trusted") is True
        server.results = ResultStore(s.storage_path)
        server.results.sweep()
        _schedule_sweeps(server)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(_params: Any) -> None:
        server.shutdown_resources()

    @server.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def progress_cancel(params: lsp.WorkDoneProgressCancelParams) -> None:
        job_id = server.token_jobs.get(params.token)
        if job_id is not None:
            server.jobs.cancel(job_id)


def _schedule_sweeps(server: BonsaiServer) -> None:
    loop = server.loop
    if loop is None:
        return

    def sweep() -> None:
        server.read_pool.submit(server.results.sweep)
        server._sweeper = loop.call_later(300, sweep)

    server._sweeper = loop.call_later(300, sweep)


def _register_core(server: BonsaiServer) -> None:
    @custom(server, P.LINEAGE)
    async def lineage(ls: BonsaiServer, params: P.LineageParams) -> P.LineageResult | RawJSON:
        t0 = time.perf_counter()
        folder = ls.folder_for(params.get("folder"))
        # The usual case (nothing changed) is answered right here from the cached JSON.
        entry = ls.lineage.peek(folder, ls.notify_lineage)
        t1 = time.perf_counter()
        if entry is None:
            entry = await ls.in_reader(ls.lineage.get, folder, ls.notify_lineage)
        t2 = time.perf_counter()
        if t2 - t0 > 0.02:
            log.debug(
                "slow bonsai/lineage: peek %.0f ms, compute %.0f ms", 1000 * (t1 - t0), 1000 * (t2 - t1)
            )
        # a re-run is remaking some of these models: they show as running
        return RawJSON(entry.with_running(folder, _running_variants(ls), _unasked_models(ls)))

    @custom(server, P.JOBS)
    async def jobs(ls: BonsaiServer, params: P.Empty) -> P.JobsResult:
        return {"jobs": [j.info() for j in ls.jobs.jobs()]}

    @custom(server, P.CANCEL)
    async def cancel(ls: BonsaiServer, params: P.CancelParams) -> P.CancelResult:
        if ls.jobs.get(params["jobId"]) is None:
            raise RequestError(P.NOT_FOUND, f"no job '{params['jobId']}'")
        return {"cancelled": ls.jobs.cancel(params["jobId"])}


def _running_variants(ls: BonsaiServer) -> set[tuple[str, str]]:
    live: set[tuple[str, str]] = set()
    for job in ls.jobs.active():
        live.update(job.variants)
    return live


def _unasked_models(ls: BonsaiServer) -> dict[str, str]:
    """Model id -> why, for the models running jobs re-evaluate or re-make unasked (their plans)."""
    out: dict[str, str] = {}
    for job in ls.jobs.active():
        out.update(job.unasked)
    return out


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def _quiet_libraries() -> None:
    # Progress bars and advisory warnings would otherwise go to stderr (fine) or, for some
    # libraries, to stdout (fatal): silence them all before anything imports them. The
    # libraries' own loggers (torchao's "Failed to load", torch's _pytree) are the engine's rule.
    from ..quiet import quiet_libraries

    quiet_libraries()
    for key, value in {
        "TQDM_DISABLE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(created).3f %(levelname)s %(name)s: %(message)s"
    )
    for name in ("pygls", "modelbonsai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _take_stdout() -> Any:
    """The real stdout as a binary stream for JSON-RPC; fd 1 and sys.stdout now go to stderr."""
    sys.stdout.flush()
    rpc_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _widen_pipe(rpc_fd)
    # Buffered: a raw write may be partial on a pipe; pygls flushes after every message.
    return os.fdopen(rpc_fd, "wb")


def _widen_pipe(fd: int) -> None:
    """Grow the stdout pipe from 64 KB to as much as allowed (Linux; 1 MB unprivileged): a
    multi-MB response then crosses in a few hand-offs between the two processes instead of
    dozens, which is what its latency is made of on a busy machine."""
    if sys.platform != "linux":
        return
    import fcntl

    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1 << 20
    for size in (min(limit, 16 << 20), 1 << 20):
        try:
            fcntl.fcntl(fd, set_size, size)
            return
        except OSError:
            continue


def main(argv: list[str] | None = None) -> int:
    """`bonsai serve`: the language server over stdio."""
    from ..startpath import leave_start_folder_off_sys_path

    leave_start_folder_off_sys_path()  # before anything imports what a workspace could shadow
    rpc_out = _take_stdout()
    _quiet_libraries()
    if os.environ.get("BONSAI_LSP_DEBUG"):
        logging.getLogger("modelbonsai").setLevel(logging.DEBUG)
    server = create_server()
    try:
        server.serve_stdio(sys.stdin.buffer, rpc_out)
    finally:
        server.shutdown_resources()
    return 0


if __name__ == "__main__":  # python -m modelbonsai.lsp.server
    sys.exit(main())


__all__ = ["BonsaiServer", "RequestError", "as_path", "create_server", "custom", "main"]
