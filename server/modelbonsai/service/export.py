"""Exporting a stored model out of the store (`bonsai export`, bonsai/model/export)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..store import LineageStore, ModelRecord
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
        if job.format == "onnx" or job.format == "executorch":
            return _for_runtime(job, store, rec, rep)
        path = export_model(
            store.artifact_path(rec),
            job.dir,
            skeleton_factory(store, rec),
            format=job.format,
            force=job.force,
            dequantize=job.dequantize,
            ops=lineage_ops(store, rec),
        )
    rep.progress(1.0, f"exported {rec.name} to {path}")
    return str(path)


def _for_runtime(job: ExportJob, store: LineageStore, rec: ModelRecord, rep: Reporter) -> str:
    """ONNX / ExecuTorch: traced on the model's task's example input, then run in the runtime and
    checked against the stored model (deploy/exporter.py); the check comes as messages before the last."""
    from ..deploy.exporter import export_for_runtime
    from .models import load_compressed

    done = export_for_runtime(
        store, rec, load_compressed(store, rec), Path(job.dir), job.format, force=job.force
    )
    for line in (done.note, done.summary()):
        if line:
            rep.progress(None, line)  # the runtime's check of the export, line by line
    rep.progress(1.0, f"exported {rec.name} to {done.path}")
    return str(done.path)


def safetensors_writer(store: LineageStore) -> Callable[[ModelRecord, Path], None]:
    """Writes a stored model's safetensors export into a folder (what MLflow logs as a run's
    artifacts): one rebuild, the export job's."""

    def write(rec: ModelRecord, folder: Path) -> None:
        from ..artifacts.export import export_model

        export_model(store.artifact_path(rec), folder, skeleton_factory(store, rec), format="safetensors")

    return write


def lineage_ops(store: LineageStore, rec: ModelRecord) -> list[str]:
    """The ops that made `rec` from its base, base first: an export that cannot write a tensor
    names the op that made it."""
    ops: list[str] = []
    cur, seen = rec, set()
    while cur.parent_id is not None and cur.id not in seen:
        seen.add(cur.id)
        if cur.op:
            ops.append(str(cur.op))
        cur = store.get_model(cur.parent_id)
    return ops[::-1]
