"""Requests that make, remove or export models: bonsai/run, model/delete, model/export,
experiment/create. (Comparisons are in compare_requests.py; lineage/jobs/cancel in server.py.)"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..runner import RunResult
from ..service import (
    ExportJob,
    MeasureJob,
    ReportJob,
    RunJob,
    RunPlanned,
    WorkError,
    failures_text,
    problems_text,
)
from ..store import LineageStore, ModelNotFound, ModelRecord, StoreError
from . import protocol as P
from .jobs import JobContext
from .worker import Listeners

if TYPE_CHECKING:
    from .server import BonsaiServer

log = logging.getLogger(__name__)


def register(server: BonsaiServer) -> None:
    from .server import RequestError, as_path, custom, work_done_token

    @custom(server, P.RUN)
    async def run(ls: BonsaiServer, params: P.RunParams) -> P.RunResult:
        from ..experiment import load_experiment

        file = as_path(params["file"])
        if not file.is_file():
            raise RequestError(P.NOT_FOUND, f"experiment file {file} does not exist")
        # Refuse a broken file up front, with its first problems, instead of queueing a doomed job.
        parsed = await ls.in_reader(load_experiment, file)
        if parsed.experiment is None or parsed.errors:
            raise RequestError(P.USER_ERROR, problems_text(file, parsed.errors or parsed.problems))
        exp = parsed.experiment
        names = [v.name for v in exp.variants]
        wanted = params.get("variants") or None
        if wanted:
            # A CodeLens over a swept declaration names it as written (`prune-{sparsity}`):
            # that means every variant the sweep makes.
            wanted = list(
                dict.fromkeys(
                    x
                    for n in wanted
                    for x in ([n] if n in names else [v.name for v in exp.variants if v.sweep_of == n] or [n])
                )
            )
            unknown = [n for n in wanted if n not in names]
            if unknown:
                raise RequestError(
                    P.USER_ERROR,
                    f"{file.name}: no variant named {', '.join(unknown)} "
                    f"(variants: {', '.join(names) or 'none'})",
                )
        folder = ls.folder_for(file=file)
        title = f"Run {', '.join(wanted) if wanted else 'all variants'} ({file.name})"
        spec = RunJob(
            file=str(file),
            folder=str(folder),
            device=ls.device(),
            variants=tuple(wanted) if wanted else None,
            force=bool(params.get("force", False)),
            max_instances=ls.settings.max_instances,
        )

        def work(ctx: JobContext) -> RunResult:
            def on_plan(plan: RunPlanned) -> None:
                # What the run does unasked: marked in the lineage while the job runs, and said
                # in its progress before it starts.
                if not plan.unasked:
                    return
                ctx.job.unasked = {e.id: e.why for e in plan.unasked if e.id}
                ctx.job.variants |= {(str(file), e.variant) for e in plan.unasked if not e.id and e.variant}
                ctx.note(plan.message)
                ls.lineage_changed(folder)

            result = ls.workers.run(
                spec, ctx, Listeners(lineage=lambda: ls.lineage_changed(folder), planned=on_plan)
            )
            if result.failed:  # the job fails, saying which variants and why
                raise WorkError(failures_text(result))
            return result

        job = ls.submit(
            spec.queue_kind, title, work, token=work_done_token(params), folder=folder, device=spec.device
        )
        job.variants = {(str(file), n) for n in (wanted or names)}
        return {"jobId": job.id}

    @custom(server, P.MODEL_MEASURE)
    async def measure(ls: BonsaiServer, params: P.MeasureParams) -> P.RunResult:
        ids = [str(i) for i in params["ids"]]
        if not ids:
            raise RequestError(P.USER_ERROR, "no model to measure")
        found = [await ls.in_reader(_find_model, ls, i) for i in ids]
        folder = found[0][0]
        if any(f != folder for f, _s, _r in found):
            raise RequestError(P.USER_ERROR, "measure models of one workspace folder at a time")
        names = [rec.name for _f, _s, rec in found]
        spec = MeasureJob(
            folder=str(folder), models=tuple(rec.id for _f, _s, rec in found), device=ls.device()
        )
        job = ls.submit(
            spec.queue_kind,  # a run's kind: it writes the store (delete waits for it)
            f"Measure latency of {', '.join(names)}",
            lambda ctx: ls.workers.run(spec, ctx, Listeners(lineage=lambda: ls.lineage_changed(folder))),
            token=work_done_token(params),
            folder=folder,
            device=spec.device,
        )
        return {"jobId": job.id}

    @custom(server, P.MODEL_DELETE)
    async def delete(ls: BonsaiServer, params: P.DeleteParams) -> P.DeleteResult:
        folder, store, rec = await ls.in_reader(_find_model, ls, params["id"])
        busy = [j for j in ls.jobs.active() if j.kind == "run" and ls.job_folders.get(j.id) == folder]
        if busy:
            raise RequestError(
                P.USER_ERROR,
                f"a run is in progress in {folder.name} ({busy[0].title}); "
                "delete models once it has finished or been cancelled",
            )
        gone = await ls.in_reader(lambda: store.delete_model(rec.id, recursive=bool(params.get("recursive"))))
        ls.lineage_changed(folder)
        return {"deleted": [m.id for m in gone]}

    @custom(server, P.MODEL_EXPORT)
    async def export(ls: BonsaiServer, params: P.ExportParams) -> P.PathResult:
        from ..artifacts.export import export_conflict
        from ..deploy.exporter import export_conflict as runtime_conflict

        folder, _store, rec = await ls.in_reader(_find_model, ls, params["id"])
        out = as_path(params["dir"])
        force = bool(params.get("force", False))
        # Asked before a job is queued: the client learns at once that it must ask the user.
        fmt = params["format"]
        check = runtime_conflict if fmt in ("onnx", "executorch") else export_conflict
        conflict = None if force else await ls.in_reader(check, out, fmt)
        if conflict is not None:
            raise RequestError(P.EXPORT_EXISTS, str(conflict))
        spec = ExportJob(folder=str(folder), model=rec.id, dir=str(out), format=params["format"], force=force)
        job = ls.submit(
            spec.queue_kind,
            f"Export {rec.name}",
            lambda ctx: ls.workers.run(spec, ctx),
            token=work_done_token(params),
        )
        return {"path": await asyncio.wrap_future(job.future)}

    @custom(server, P.REPORT)
    async def report(ls: BonsaiServer, params: P.ReportParams) -> P.PathResult:
        folder = as_path(params["folder"])
        if folder not in ls.folders():
            raise RequestError(P.NOT_FOUND, f"{folder} is not a workspace folder of this window")
        spec = ReportJob(
            folder=str(folder), output=str(as_path(params["path"])), compare=tuple(params.get("compare", []))
        )
        job = ls.submit(
            spec.queue_kind,
            f"Report of {folder.name}",
            lambda ctx: ls.workers.run(spec, ctx),
            token=work_done_token(params),
        )
        return {"path": await asyncio.wrap_future(job.future)}

    @custom(server, P.EXPERIMENT_CREATE)
    async def create(ls: BonsaiServer, params: P.CreateExperimentParams) -> P.PathResult:
        model = as_path(params["configPath"])
        function, factory = params.get("function"), params.get("factory")
        return {"path": str(await ls.in_reader(write_starter, model, function, factory))}

    @custom(server, P.EXPERIMENT_FACTORIES)
    async def factories(ls: BonsaiServer, params: P.FactoriesParams) -> P.FactoriesResult:
        path = as_path(params["path"])
        if not path.is_file():
            raise RequestError(P.NOT_FOUND, f"{path} does not exist")
        found = await ls.in_reader(model_factories_of, path)
        # ModelFactory.to_json writes ModelFactoryInfo's fields (the protocol fixture checks them)
        return {"factories": [cast(P.ModelFactoryInfo, f.to_json()) for f in found]}


def _find_model(ls: BonsaiServer, model_id: str) -> tuple[Path, LineageStore, ModelRecord]:
    """The model with this id (or name) in any workspace folder's store."""
    errors = []
    for folder in ls.folders():
        if not (folder / ".bonsai").is_dir():
            continue
        store = ls.store(folder)
        try:
            return folder, store, store.get_model(model_id)
        except StoreError as e:
            errors.append(str(e))
    raise ModelNotFound(
        f"no model '{model_id}' in this workspace" + (f" ({errors[0]})" if len(errors) == 1 else "")
    )


def write_starter(model: Path, function: str | None = None, factory: str | None = None) -> Path:
    """Write a starter experiment file beside a model (config.json, .py or .safetensors); returns
    its path. Nothing is written unless it validates (experiment/starter.py)."""
    from ..experiment.starter import create_starter

    return create_starter(model, function=function, factory=factory)


def model_factories_of(path: Path) -> list[Any]:
    """A .py file's model factories; for a weights file, those callable without arguments found
    beside it (after checking the weights can be read). Read without importing anything."""
    from ..experiment.factories import factories_in_file, factories_near
    from ..experiment.starter import StarterError, weights_summary

    if path.suffix.lower() == ".py":
        return factories_in_file(path)
    if path.suffix.lower() == ".safetensors":
        weights_summary(path)
        return factories_near(path)
    raise StarterError(f"{path.name} is neither a .py nor a .safetensors file")
