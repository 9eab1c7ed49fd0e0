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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import wire
from ..errors import BonsaiError, UserError
from ..store import ModelRecord
from . import protocol as P
from .jobs import JobCancelled, JobContext
from .requests import _find_model

if TYPE_CHECKING:
    from .server import BonsaiServer

log = logging.getLogger(__name__)


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
    out = {}
    for key, value in given.items():
        if key not in allowed:
            raise OptionError(
                f"{what}: unknown option '{key}' (options: {', '.join(sorted(allowed)) or 'none'})"
            )
        typ = allowed[key]
        if value is not None and (not isinstance(value, typ) or (isinstance(value, bool) and typ is int)):
            raise OptionError(f"{what}: option '{key}' has the wrong type ({type(value).__name__})")
        out[key] = value
    return out


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
    params: dict[str, Any],
    kind: str,
    spec: dict[str, Any],
    *,
    first_reply_s: float | None = None,
) -> P.ResultRef:
    """Run task `kind` (work.py) as a compare job; answer with page 0 once it exists, or after
    `first_reply_s` (when given) with no data yet. The reply names the job."""
    rid = ls.results.new()
    spec = {**spec, "maxInstances": ls.settings.max_instances}

    def work(ctx: JobContext) -> None:
        try:
            ls.workers.run(
                kind,
                {**spec, "device": ctx.job.device},
                ctx,
                on_page=lambda data: add_envelope(ls, rid, data),
            )
        except BaseException as e:
            from ..ops.registry import Cancelled

            ls.results.finish(
                rid,
                error="cancelled" if isinstance(e, Cancelled) else str(e) or type(e).__name__,
                cancelled=isinstance(e, Cancelled),
            )
            raise
        ls.results.finish(rid)

    job = ls.submit("compare", title, work, token=params.get("workDoneToken"))
    job.meta["resultId"] = rid
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


def _check_activation_options(aopts: dict[str, Any]) -> None:
    from ..compare.activations import ActivationOptions

    ActivationOptions(
        instances=aopts["instances"],
        batch_size=aopts["batchSize"],
        mode=aopts["mode"],
        isolated_scope=aopts["isolatedScope"],
    ).check()


def register(server: BonsaiServer) -> None:
    from .server import RequestError, custom

    def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(ls: BonsaiServer, params: dict[str, Any]) -> Any:
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
    async def weights(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(
            params.get("options") or {}, {"include": (str, list), "exclude": (str, list)}, "compare/weights"
        )
        spec = {"folder": str(folder), "base": base.id, "models": [m.id for m in others], "options": opts}
        return await start_result_job(
            ls,
            f"Compare weights with {base.name}",
            params,
            "compare/weights",
            spec,
            first_reply_s=FIRST_REPLY_S,
        )

    @custom(server, P.COMPARE_ACTIVATIONS)
    @guard
    async def activations(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(
            params.get("options") or {},
            {
                "instances": int,
                "batchSize": int,
                "mode": str,
                "isolatedScope": str,
                "modules": list,
            },
            "compare/activations",
        )
        aopts: dict[str, Any] = {
            "instances": opts.get("instances") or ls.settings.max_instances or 64,
            "batchSize": opts.get("batchSize") or 16,
            "mode": opts.get("mode") or "both",
            "isolatedScope": opts.get("isolatedScope") or "leaves",
            "modules": opts.get("modules"),
        }
        # Bad values fail here, not in a job. In a reader thread: the first import of the
        # comparison engine (torch, compiled kernels) takes seconds the event loop must not wait.
        await ls.in_reader(_check_activation_options, aopts)
        spec = {
            "folder": str(folder),
            "base": base.id,
            "models": [m.id for m in others],
            "activationOptions": aopts,
        }
        return await start_result_job(
            ls,
            f"Compare activations with {base.name}",
            params,
            "compare/activations",
            spec,
            first_reply_s=FIRST_REPLY_S,
        )

    @custom(server, P.COMPARE_BEHAVIOR)
    @guard
    async def behavior(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        folder, base, others = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(params.get("options") or {}, {"bootstrap": int, "seed": int}, "compare/behavior")
        spec = {"folder": str(folder), "base": base.id, "models": [m.id for m in others], "options": opts}
        return await start_result_job(
            ls,
            f"Compare behaviour with {base.name}",
            params,
            "compare/behavior",
            spec,
            first_reply_s=FIRST_REPLY_S,
        )

    @custom(server, P.TENSOR_TILES)
    @guard
    async def tensor_tiles(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        source = params.get("source") or "weight"
        if source not in ("weight", "activation"):
            raise OptionError(
                f"bonsai/tensor/tiles: unknown source '{source}' (use 'weight' or 'activation')"
            )
        instances = params.get("instances")
        if instances is not None and (
            not isinstance(instances, list) or not all(isinstance(i, str) for i in instances)
        ):
            raise OptionError("bonsai/tensor/tiles: 'instances' must be a list of instance ids (strings)")
        if source == "activation" and not instances:
            raise OptionError(
                "bonsai/tensor/tiles: activation tiles need 'instances', the ids of the "
                "instances to show (rows, in the order given)"
            )
        ids = [params["model"]] + ([params["other"]] if params.get("other") else [])
        folder, model, others = await ls.in_reader(resolve_models, ls, ids[0], ids[1:] or [ids[0]])
        # for activations `tensor` is a module name; the device comes with the job (start_result_job)
        spec = {
            "folder": str(folder),
            "model": model.id,
            "other": others[0].id if params.get("other") else None,
            "tensor": params["tensor"],
            "level": params["level"],
            "source": source,
            "instances": instances,
            "window": [params["y0"], params["x0"], params["y1"], params["x1"]],
        }  # rows are y, columns x
        title = tiles_title(
            source, params["tensor"], model.name, others[0].name if params.get("other") else None
        )
        return await start_result_job(ls, title, params, "tensor/tiles", spec)

    @custom(server, P.INSTANCES)
    @guard
    async def instances(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        model_ids = params.get("models") or []
        if not model_ids:
            raise OptionError("bonsai/instances needs 'models' (the first one's task renders the instances)")
        folder, first, rest = await ls.in_reader(
            resolve_models, ls, model_ids[0], model_ids[1:] or [model_ids[0]]
        )
        models = [first, *rest[: len(model_ids) - 1]]
        spec = {
            "folder": str(folder),
            "base": first.id,
            "models": [m.id for m in models[1:]],
            "ids": params["ids"],
        }
        return await start_result_job(ls, f"Instances ({len(params['ids'])})", params, "instances", spec)

    @custom(server, RESULT_PAGE_METHOD)
    async def result_page(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
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
