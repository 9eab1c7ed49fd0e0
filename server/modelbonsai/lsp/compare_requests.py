"""Comparison requests: bonsai/compare/{weights,activations,behavior}, bonsai/tensor/tiles,
bonsai/instances. Each runs as a "compare" job (queued per device, cancellable, with progress)
over :mod:`modelbonsai.compare.api` (which caches results in the store).

A comparison of a base with N models is one result of (at least) N pages, one wire envelope per
model, in the order asked; the request answers as soon as the first page exists, and the client
asks for the others with bonsai/result/page (held until each is computed), so views fill in
while the rest runs. An envelope over the inline limit becomes a file page when the client gave
a storage folder, else it is split with wire.paginate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import wire
from ..store import LineageStore, ModelRecord, StoreError
from . import protocol as P
from .jobs import JobCancelled, JobContext
from .requests import _find_model, root_of, skeleton_factory

if TYPE_CHECKING:
    from .server import BonsaiServer

log = logging.getLogger(__name__)


class OptionError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# Models and their experiment context
# ---------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    folder: Path
    store: LineageStore
    base: ModelRecord
    others: list[ModelRecord]


def resolve_models(ls: BonsaiServer, base_id: str, other_ids: Sequence[str]) -> Ctx:
    if not other_ids:
        raise OptionError("nothing to compare the base with: give at least one model in 'models'")
    folder, store, base = _find_model(ls, base_id)
    others = []
    for oid in other_ids:
        f, _s, rec = _find_model(ls, oid)
        if f != folder:
            raise OptionError(f"model '{oid}' is in {f.name}, the base '{base_id}' in {folder.name}: "
                              "compare models of one workspace folder")
        others.append(rec)
    for rec in (base, *others):
        if rec.status != "ok":
            raise OptionError(f"model '{rec.name}' is broken: {rec.status_reason}")
    return Ctx(folder, store, base, others)


def experiment_of(store: LineageStore, rec: ModelRecord) -> Any:
    """The parsed experiment file a model came from (for its task), or None."""
    from ..experiment import load_experiment

    root = root_of(store, rec)
    label = rec.experiment_file or root.experiment_file
    if not label:
        return None
    path = Path(label)
    path = path if path.is_absolute() else store.workspace / path
    parsed = load_experiment(path)
    return parsed.experiment or parsed.partial


def task_of(ls: BonsaiServer, store: LineageStore, rec: ModelRecord, instances: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(task instance, task key) for a model's experiment; OptionError when it has no task."""
    from ..tasks import get_task_class

    exp = experiment_of(store, rec)
    if exp is None or exp.task is None:
        raise OptionError(f"model '{rec.name}' comes from no experiment file with a `task:` section; "
                          "this comparison needs the task's data")
    cls = get_task_class(exp.task.kind, exp.root)
    limit = instances or ls.settings.max_instances or exp.task.max_instances
    task = cls(dict(exp.task.options), exp.root, max_instances=limit)
    return task, {"kind": exp.task.kind, "options": exp.task.options, "max_instances": limit}


def load_module(store: LineageStore, rec: ModelRecord) -> Any:
    from ..artifacts import load_artifact

    return load_artifact(store.artifact_path(rec), skeleton_factory(store, rec)).module


def _options(given: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    out = {}
    for key, value in given.items():
        if key not in allowed:
            raise OptionError(f"{what}: unknown option '{key}' (options: {', '.join(sorted(allowed)) or 'none'})")
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
    ls: BonsaiServer, title: str, params: dict[str, Any], produce: Callable[[JobContext, str], None]
) -> P.ResultRef:
    """Run `produce(ctx, result_id)` as a compare job; answer with page 0 once it exists."""
    rid = ls.results.new()

    def work(ctx: JobContext) -> None:
        try:
            produce(ctx, rid)
        except BaseException as e:
            from ..ops.registry import Cancelled

            ls.results.finish(rid, error="cancelled" if isinstance(e, Cancelled) else str(e) or type(e).__name__,
                              cancelled=isinstance(e, Cancelled))
            raise
        ls.results.finish(rid)

    job = ls.submit("compare", title, work, token=params.get("workDoneToken"))
    job.meta["resultId"] = rid
    try:
        await asyncio.wrap_future(ls.results.wait_page(rid, 0))
    except asyncio.CancelledError:  # $/cancelRequest: stop the job too
        ls.jobs.cancel(job.id)
        raise
    return await ls.in_reader(lambda: ls.results.ref(rid, 0, wait_s=0.0))


def register(server: BonsaiServer) -> None:
    from .server import RequestError, custom

    def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(ls: BonsaiServer, params: dict[str, Any]) -> Any:
            try:
                return await fn(ls, params)
            except OptionError as e:
                raise RequestError(P.USER_ERROR, str(e)) from None
            except JobCancelled:
                raise RequestError(P.REQUEST_CANCELLED, "the comparison was cancelled") from None
            except StoreError as e:
                raise RequestError(P.NOT_FOUND if str(e).startswith("no model") else P.USER_ERROR, str(e)) from None
            except RuntimeError as e:  # the job failed before producing a page
                raise RequestError(P.JOB_FAILED, str(e)) from None
        return wrapped

    @custom(server, P.COMPARE_WEIGHTS)
    @guard
    async def weights(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        from ..compare import api

        ctx = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(params.get("options") or {}, {"include": (str, list), "exclude": (str, list)},
                        "compare/weights")

        def produce(job: JobContext, rid: str) -> None:
            n = len(ctx.others)
            for i, other in enumerate(ctx.others):
                out = api.store_weights(
                    ctx.store, ctx.base.id, other.id, include=opts.get("include"), exclude=opts.get("exclude"),
                    progress=lambda f, m, i=i, name=other.name: job.progress((i + f) / n, f"{name}: {m}"),
                    cancelled=job.cancelled,
                )
                add_envelope(ls, rid, out.data, out.result)

        return await start_result_job(ls, f"Compare weights with {ctx.base.name}", params, produce)

    @custom(server, P.COMPARE_ACTIVATIONS)
    @guard
    async def activations(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        from ..compare import api
        from ..compare.activations import ActivationOptions

        ctx = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(params.get("options") or {}, {
            "instances": int, "batchSize": int, "mode": str, "isolatedScope": str, "modules": list,
        }, "compare/activations")
        aopts = ActivationOptions(
            instances=opts.get("instances") or ls.settings.max_instances or 64,
            batch_size=opts.get("batchSize") or 16,
            mode=opts.get("mode") or "both",
            isolated_scope=opts.get("isolatedScope") or "leaves",
            modules=opts.get("modules"),
        )
        aopts.check()

        def produce(job: JobContext, rid: str) -> None:
            task, task_key = task_of(ls, ctx.store, ctx.base)
            base_module = load_module(ctx.store, ctx.base)
            n = len(ctx.others)
            for i, other in enumerate(ctx.others):
                odir = ctx.store.artifact_path(other)
                out = api.activations(
                    ctx.store, ctx.base.id, other.id, base_module, lambda other=other: load_module(ctx.store, other),
                    task, task_key=task_key, device=job.job.device, options=aopts,
                    kept_indices=lambda odir=odir: api.artifact_kept_indices(odir),
                    progress=lambda f, m, i=i: job.progress((i + f) / n, m), cancelled=job.cancelled,
                )
                add_envelope(ls, rid, out.data, out.result)

        return await start_result_job(ls, f"Compare activations with {ctx.base.name}", params, produce)

    @custom(server, P.COMPARE_BEHAVIOR)
    @guard
    async def behavior(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        from ..compare import api
        from ..runner import load_evaluation

        ctx = await ls.in_reader(resolve_models, ls, params["base"], params["models"])
        opts = _options(params.get("options") or {}, {"bootstrap": int, "seed": int}, "compare/behavior")

        def evaluation(rec: ModelRecord) -> Any:
            ev = load_evaluation(ctx.store, rec)
            if ev is None:
                raise OptionError(f"model '{rec.name}' has no stored evaluation outputs (was it run with a task?)")
            return ev

        def produce(job: JobContext, rid: str) -> None:
            task_key: dict[str, Any] = {}
            groupings = None
            class_names = None
            try:
                task, task_key = task_of(ls, ctx.store, ctx.base)
                groupings, class_names = task.groupings, task.class_names()
            except OptionError:
                pass  # outputs alone still compare; groups then come from targets only
            n = len(ctx.others)
            for i, other in enumerate(ctx.others):
                out = api.behavior(
                    ctx.store, ctx.base.id, other.id, lambda: evaluation(ctx.base), lambda other=other: evaluation(other),
                    task_key=task_key, groupings=groupings, class_names=class_names,
                    bootstrap=opts.get("bootstrap", 1000), seed=opts.get("seed", 0),
                    progress=lambda f, m, i=i: job.progress((i + f) / n, m), cancelled=job.cancelled,
                )
                add_envelope(ls, rid, out.data, out.result)

        return await start_result_job(ls, f"Compare behaviour with {ctx.base.name}", params, produce)

    @custom(server, P.TENSOR_TILES)
    @guard
    async def tensor_tiles(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        from ..compare import api
        from ..compare.sources import artifact_source

        if params.get("source", "weight") != "weight":
            raise OptionError("tiles of activations are not served yet: ask for source 'weight'")
        ids = [params["model"]] + ([params["other"]] if params.get("other") else [])
        ctx = await ls.in_reader(resolve_models, ls, ids[0], ids[1:] or [ids[0]])
        window = (params["y0"], params["x0"], params["y1"], params["x1"])  # rows are y, columns x

        def produce(job: JobContext, rid: str) -> None:
            model = ctx.base
            mdir = ctx.store.artifact_path(model)
            if params.get("other"):
                # the difference other - model, in the other's layout (aligned by its kept indices)
                other = ctx.others[0]
                odir = ctx.store.artifact_path(other)
                kept = api.artifact_kept_indices(odir).get(params["tensor"])
                out = api.weight_tiles(ctx.store, other.id, lambda: artifact_source(odir), params["tensor"],
                                       params["level"], window, minus=(model.id, lambda: artifact_source(mdir)),
                                       kept_indices=kept)
            else:
                out = api.weight_tiles(ctx.store, model.id, lambda: artifact_source(mdir), params["tensor"],
                                       params["level"], window)
            add_envelope(ls, rid, out.data, out.result)

        return await start_result_job(ls, f"Tiles of {params['tensor']}", params, produce)

    @custom(server, P.INSTANCES)
    @guard
    async def instances(ls: BonsaiServer, params: dict[str, Any]) -> P.ResultRef:
        model_ids = params.get("models") or []
        if not model_ids:
            raise OptionError("bonsai/instances needs 'models' (the first one's task renders the instances)")
        ctx = await ls.in_reader(resolve_models, ls, model_ids[0], model_ids[1:] or [model_ids[0]])
        models = [ctx.base, *ctx.others[: len(model_ids) - 1]]

        def produce(job: JobContext, rid: str) -> None:
            data = render_instances(ls, ctx.store, models, [str(i) for i in params["ids"]], job)
            add_envelope(ls, rid, data)

        return await start_result_job(ls, f"Instances ({len(params['ids'])})", params, produce)

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
        except RuntimeError as e:
            raise RequestError(P.JOB_FAILED, str(e)) from None


RESULT_PAGE_METHOD = P.RESULT_PAGE


def render_instances(ls: BonsaiServer, store: LineageStore, models: list[ModelRecord], ids: list[str],
                     job: JobContext) -> bytes:
    """One envelope: each instance as its task renders it (PNG bytes as uint8 tensors), and each
    model's prediction and target for it where stored."""
    import numpy as np

    from ..runner import load_evaluation

    task, _key = task_of(ls, store, models[0])
    out: list[dict[str, Any]] = []
    tensors: dict[str, Any] = {}
    for i, iid in enumerate(ids):
        job.check_cancelled()
        r = task.render(iid)
        item: dict[str, Any] = {"id": r.id, "kind": r.kind, "label": r.label}
        if r.text is not None:
            item["text"] = r.text
        if r.tokens is not None:
            item["tokens"] = list(r.tokens)
        if r.png is not None:
            tensors[f"png_{i}"] = np.frombuffer(r.png, dtype=np.uint8)
            item["png"] = f"png_{i}"
        out.append(item)
        job.progress((i + 1) / max(1, len(ids)) * 0.5, f"rendered {i + 1} of {len(ids)}")
    predictions: dict[str, list[Any]] = {}
    targets: list[Any] | None = None
    for rec in models:
        ev = load_evaluation(store, rec)
        if ev is None or ev.predictions is None:
            continue
        pos = {str(x): k for k, x in enumerate(ev.ids)}
        predictions[rec.id] = [ev.predictions[pos[i]].tolist() if i in pos else None for i in ids]
        if targets is None and ev.targets is not None:
            targets = [ev.targets[pos[i]].tolist() if i in pos else None for i in ids]
    names = task.class_names()
    meta = {"instances": out, "models": [m.id for m in models], "predictions": predictions, "targets": targets,
            "classNames": list(names) if names else None}
    return wire.encode_result("instances", meta, tensors)
