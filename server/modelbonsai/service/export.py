"""Exporting a stored model out of the store (`bonsai export`, bonsai/model/export)."""

from __future__ import annotations

from ..errors import UserError
from ..store import LineageStore
from .jobs import ExportJob
from .models import skeleton_factory
from .reporter import Reporter


def export(job: ExportJob, rep: Reporter) -> str:
    """Rebuild the model from its artifact and write it; returns the path written. A non-empty
    `job.dir` raises ExportExistsError (before anything is rebuilt) unless `job.force`."""
    from ..artifacts.export import export_model

    with LineageStore.open(job.folder) as store:
        rec = store.get_model(job.model)
        if rec.status != "ok":
            raise UserError(f"model '{rec.name}' is broken: {rec.status_reason}")
        rep.progress(0.1, f"rebuilding {rec.name}")
        path = export_model(
            store.artifact_path(rec),
            job.dir,
            skeleton_factory(store, rec),
            format=job.format,
            force=job.force,
        )
    rep.progress(1.0, f"exported {rec.name} to {path}")
    return str(path)
