"""Comparison requests: bonsai/compare/{weights,activations,behavior}, bonsai/tensor/tiles,
bonsai/instances. Each runs as a "compare" job (queued per device, cancellable, with progress)
over :mod:`modelbonsai.compare.api` (which caches results in the store).

A comparison of a base with N models is one result of (at least) N pages, one wire envelope per
model, in the order asked. A comparison answers as soon as its first page exists, or after
:data:`FIRST_REPLY_S` without data (``done: false``) when it is slower: either way the reply names
the job (``jobId``), so the client can cancel a long comparison with bonsai/cancel while it runs.
The client asks for the pages with bonsai/result/page (held until each is computed), so views
fill in while the rest runs. Tiles and instances (quick, wanted whole) answer with page 0. An envelope over the inline limit becomes a file page when the client gave
a storage folder, else it is split with wire.paginate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import wire
from ..errors import BonsaiError, UserError
from ..service import (
    CompareActivationsJob,
    CompareBehaviorJob,
    CompareWeightsJob,
    InstancesJob,
    JobSpec,
    TilesJob,
)
from ..store import ModelRecord
from . import protocol as P
from .jobs import JobCancelled, JobContext
from .requests import _find_model
from .worker import Listeners

if TYPE_CHECKING:
    from ..compare.activations import ActivationOptions
    from .server import BonsaiServer

log = logging.getLogger(__name__)
ParamsT = TypeVar("ParamsT")


# A comparison's first reply waits at most this long for page 0, so that the client learns the
# job id (to cancel it) early even when the first compared model takes minutes.
FIRST_REPLY_S = 0.5


class OptionError(UserError, ValueError):
    """A comparison option the request got wrong (USER_ERROR, checked before any job)."""


def resolve_models(
    ls: BonsaiServer, base_id: str, other_ids: Sequence[str]
) -> tuple[Path, ModelRecord, list[ModelRecord]]:
    """Check the models exist (in one folder) and are not broken, before queueing a job."""
    if not other_ids:
        raise OptionError("nothing to compare the base with: give at least one model in 'models'")
    folder, _store, base = _find_model(ls, base_id)
    others = []
    for oid in other_ids:
        f, _s, rec = _find_model(ls, oid)
        if f != folder:
            raise OptionError(
                f"model '{oid}' is in {f.name}, the base '{base_id}' in {folder.name}: "
                "compare models of one workspace folder"
            )
        others.append(rec)
    for rec in (base, *others):
        if rec.status != "ok":
            raise OptionError(f"model '{rec.name}' is broken: {rec.status_reason}")
    return folder, base, others


def _options(given: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    """The options of a request, each of a known name and type; a missing or null one is absent
    (its job spec's default applies)."""
    out = {}
    for key, value in given.items():
        if key not in allowed:
            raise OptionError(
                f"{what}: unknown option '{key}' (options: {', '.join(sorted(allowed)) or 'none'})"
            )
        typ = allowed[key]
        if value is not None and (not isinstance(value, typ) or (isinstance(value, bool) and typ is int)):
            raise OptionError(f"{what}: option '{key}' has the wrong type ({type(value).__name__})")
        if value is not None:
            out[key] = value
    return out


def _patterns(value: str | list[str] | None) -> str | tuple[str, ...] | None:
    return tuple(value) if isinstance(value, list) else value


def activation_options(given: dict[str, Any], max_instances: int | None) -> ActivationOptions:
    """bonsai/compare/activations' options as the engine's ActivationOptions, checked: a missing
    option is the engine's default, except `instances`, which is the server's instance limit when
    it has one. In a reader thread: the first import of the comparison engine (torch, compiled
    kernels) takes seconds the event loop must not wait."""
    from ..compare.activations import ActivationOptions

    fields = {"instances": "instances", "batchSize": "batch_size", "mode": "mode"}
    fields |= {"isolatedScope": "isolated_scope", "modules": "modules"}
    kwargs: dict[str, Any] = {name: given[key] for key, name in fields.items() if key in given}
    if "instances" not in kwargs and max_instances:
        kwargs["instances"] = max_instances
    options = ActivationOptions(**kwargs)
    options.check()  # bad values fail here, not in a job
    return options


# ---------------------------------------------------------------------------------------------
# Jobs producing result pages
# ---------------------------------------------------------------------------------------------
def add_envelope(ls: BonsaiServer, result_id: str, data: bytes, decoded: wire.Result | None = None) -> None:
    """One envelope as one page, or paged when it is too big to send inline and no file can go."""
    if len(data) <= ls.results.inline_limit or ls.results.folder is not None:
        ls.results.add_page(result_id, data)
        return
    r = decoded or wire.decode_result(data)
    for page in wire.paginate(r.kind, r.meta, r.tensors, page_bytes=ls.results.inline_limit):
        ls.results.add_page(result_id, page)


async def start_result_job(
    ls: BonsaiServer,
    title: str,
    params: P.CompareParams | P.TilesParams | P.InstancesParams,
    spec: JobSpec[None],
    *,
    device: str,
    first_reply_s: float | None = None,
) -> P.ResultRef:
    """Run `spec` (a service job producing pages) as a compare job on `device`; answer with
    page 0 once it exists, or after `first_reply_s` (when given) with no data yet. The reply
    names the job."""
    from .server import work_done_token

    rid = ls.results.new()

    def work(ctx: JobContext) -> None:
        try:
            ls.workers.run(spec, ctx, Listeners(page=lambda data: add_envelope(ls, rid, data)))
        except BaseException as e:
            from ..ops.registry import Cancelled

            ls.results.finish(
                rid,
                error="cancelled" if isinstance(e, Cancelled) else str(e) or type(e).__name__,
                cancelled=isinstance(e, Cancelled),
            )
            raise
        ls.results.finish(rid)

    job = ls.submit(spec.queue_kind, title, work, token=work_done_token(params), device=device)
    job.result_id = rid
    ls.results.attach_job(rid, job.id)
    try:
        # shield: a timeout must not cancel the store's future (only this wait for it)
        await asyncio.wait_for(
            asyncio.shield(asyncio.wrap_future(ls.results.wait_page(rid, 0))), first_reply_s
        )
    except asyncio.TimeoutError:
        pass  # still computing: answer now with the job id and no data (done: false)
    except asyncio.CancelledError:  # $/cancelRequest: stop the job too
        ls.jobs.cancel(job.id)
        raise
    return await ls.in_reader(lambda: ls.results.ref(rid, 0, wait_s=0.0))


def register(server: BonsaiServer) -> None:
    from .server import RequestError, custom

    def guard(
        fn: Callable[[BonsaiServer, ParamsT], Awaitable[P.ResultRef]],
    ) -> Callable[[BonsaiServer, ParamsT], Awaitable[P.ResultRef]]:
        async def wrapped(ls: BonsaiServer, params: ParamsT) -> P.ResultRef:
            try:
                return await fn(ls, params)
            except JobCancelled:
                raise RequestError(P.REQUEST_CANCELLED, "the comparison was cancelled") from None
            except (ValueError, RuntimeError) as e:
                if isinstance(e, BonsaiError):
                    raise  # `custom` answers with its class's code
                # A problem the job found without a Bonsai class (a library's error, the worker died)
                raise RequestError(P.JOB_FAILED, str(e)) from None

        return wrapped

    @custom(server, P.COMPARE_WEIGHTS)
    @guard
    async def weights(ls: BonsaiServer, params: P.CompareParams) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(
            params.get("options") or {}, {"include": (str, list), "exclude": (str, list)}, "compare/weights"
        )
        spec = CompareWeightsJob(
            folder=str(folder),
            base=base.id,
            models=tuple(m.id for m in others),
            include=_patterns(opts.get("include")),
            exclude=_patterns(opts.get("exclude")),
        )
        title = f"Compare weights with {base.name}"
        return await start_result_job(
            ls, title, params, spec, device=ls.device(), first_reply_s=FIRST_REPLY_S
        )

    @custom(server, P.COMPARE_ACTIVATIONS)
    @guard
    async def activations(ls: BonsaiServer, params: P.CompareParams) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        allowed: dict[str, type | tuple[type, ...]] = {
            "instances": int,
            "batchSize": int,
            "mode": str,
            "isolatedScope": str,
            "modules": list,
        }
        opts = _options(params.get("options") or {}, allowed, "compare/activations")
        options = await ls.in_reader(activation_options, opts, ls.settings.max_instances)
        spec = CompareActivationsJob(
            folder=str(folder),
            base=base.id,
            models=tuple(m.id for m in others),
            options=options,
            device=ls.device(),
            max_instances=ls.settings.max_instances,
        )
        title = f"Compare activations with {base.name}"
        return await start_result_job(
            ls, title, params, spec, device=spec.device, first_reply_s=FIRST_REPLY_S
        )

    @custom(server, P.COMPARE_BEHAVIOR)
    @guard
    async def behavior(ls: BonsaiServer, params: P.CompareParams) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(params.get("options") or {}, {"bootstrap": int, "seed": int}, "compare/behavior")
        spec = CompareBehaviorJob(
            folder=str(folder),
            base=base.id,
            models=tuple(m.id for m in others),
            device=ls.device(),
            max_instances=ls.settings.max_instances,
            **opts,  # bootstrap, seed: the spec's defaults where not given
        )
        title = f"Compare behaviour with {base.name}"
        return await start_result_job(
            ls, title, params, spec, device=spec.device, first_reply_s=FIRST_REPLY_S
        )

    @custom(server, P.TENSOR_TILES)
    @guard
    async def tensor_tiles(ls: BonsaiServer, params: P.TilesParams) -> P.ResultRef:
        source = params.get("source") or "weight"
        if source not in ("weight", "activation"):
            raise OptionError(
                f"bonsai/tensor/tiles: unknown source '{source}' (use 'weight' or 'activation')"
            )
        instances = params.get("instances")
        if source == "activation" and not instances:
            raise OptionError(
                "bonsai/tensor/tiles: activation tiles need 'instances', the ids of the "
                "instances to show (rows, in the order given)"
            )
        other_id = params.get("other")
        ids = [params["model"]] + ([other_id] if other_id else [])
        folder, model, others = await ls.in_reader(resolve_models, ls, ids[0], ids[1:] or [ids[0]])
        other = others[0] if other_id else None
        spec = TilesJob(
            folder=str(folder),
            model=model.id,
            tensor=params["tensor"],  # for activations a module name
            level=params["level"],
            window=(params["y0"], params["x0"], params["y1"], params["x1"]),  # rows are y, columns x
            other=other.id if other is not None else None,
            source=source,
            instances=tuple(instances) if instances is not None else None,
            device=ls.device(),
            max_instances=ls.settings.max_instances,
        )
        title = tiles_title(source, params["tensor"], model.name, other.name if other is not None else None)
        return await start_result_job(ls, title, params, spec, device=spec.device)

    @custom(server, P.INSTANCES)
    @guard
    async def instances(ls: BonsaiServer, params: P.InstancesParams) -> P.ResultRef:
        model_ids = params.get("models") or []
        if not model_ids:
            raise OptionError("bonsai/instances needs 'models' (the first one's task renders the instances)")
        folder, first, rest = await ls.in_reader(
            resolve_models, ls, model_ids[0], model_ids[1:] or [model_ids[0]]
        )
        models = [first, *rest[: len(model_ids) - 1]]
        spec = InstancesJob(
            folder=str(folder),
            models=tuple(m.id for m in models),
            ids=tuple(params["ids"]),
            max_instances=ls.settings.max_instances,
        )
        return await start_result_job(
            ls, f"Instances ({len(params['ids'])})", params, spec, device=ls.device()
        )

    @custom(server, RESULT_PAGE_METHOD)
    async def result_page(ls: BonsaiServer, params: P.ResultPageParams) -> P.ResultRef:
        rid, page = params["resultId"], params["page"]
        fut = ls.results.wait_page(rid, page)
        try:
            await asyncio.wait_for(asyncio.wrap_future(fut), 60)
        except asyncio.TimeoutError:
            pass  # still computing: answer with what is there (done: false, no data)
        try:
            return await ls.in_reader(lambda: ls.results.ref(rid, page, wait_s=0.0))
        except JobCancelled:
            # the result ended cancelled before this page: say so at once, with LSP's own code
            raise RequestError(
                P.REQUEST_CANCELLED, f"result {rid} was cancelled before page {page} was computed"
            ) from None
        except RuntimeError as e:
            raise RequestError(P.JOB_FAILED, str(e)) from None


RESULT_PAGE_METHOD = P.RESULT_PAGE


def tiles_title(source: str, tensor: str, model: str, other: str | None) -> str:
    """A tiles job's title: what, of which model (or which difference). The root module's name is
    "" (its activations are the model's output): a title said "Tiles of : queued"."""
    what = tensor or ("the model's output" if source == "activation" else "an unnamed tensor")
    whose = model if other is None else f"{other} − {model}"  # the tiles of other minus model
    return f"{'Activation' if source == 'activation' else 'Weight'} tiles of {what} ({whose})"
