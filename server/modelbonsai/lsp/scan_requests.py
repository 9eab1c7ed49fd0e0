"""Sensitivity scans: bonsai/scan (a job measuring a file's `scan:` section), bonsai/scans (the
stored scans of a file or folder) and bonsai/scan/budget (a recipe under a budget, as the variant
text and the edit that appends it to the experiment file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..service import ScanJob, WorkError, problems_text
from ..service.scan import budget_variant, no_scan_section, scan_by_id, scans_of
from . import protocol as P
from .worker import Listeners

if TYPE_CHECKING:
    from .server import BonsaiServer


def register(server: BonsaiServer) -> None:
    from .server import RequestError, as_path, custom, work_done_token

    @custom(server, P.SCAN)
    async def scan(ls: BonsaiServer, params: P.ScanParams) -> P.RunResult:
        from ..experiment import load_experiment

        file = as_path(params["file"])
        if not file.is_file():
            raise RequestError(P.NOT_FOUND, f"experiment file {file} does not exist")
        # Refused up front (a broken file, no `scan:`), instead of queueing a doomed job.
        parsed = await ls.in_reader(load_experiment, file)
        if parsed.experiment is None or parsed.errors:
            raise RequestError(P.USER_ERROR, problems_text(file, parsed.errors or parsed.problems))
        if parsed.experiment.scan is None:
            raise RequestError(P.USER_ERROR, str(no_scan_section(file)))
        folder = ls.folder_for(file=file)
        fidelity = params.get("fidelity")
        spec = ScanJob(
            file=str(file),
            folder=str(folder),
            device=ls.device(),
            fidelity=fidelity,
            force=bool(params.get("force", False)),
        )
        job = ls.submit(
            spec.queue_kind,
            f"Scan {file.name}",
            lambda ctx: ls.workers.run(spec, ctx, Listeners(lineage=lambda: ls.lineage_changed(folder))),
            token=work_done_token(params),
            folder=folder,
            device=spec.device,
        )
        return {"jobId": job.id}

    @custom(server, P.SCANS)
    async def scans(ls: BonsaiServer, params: P.ScansParams) -> P.ScansResult:
        file = as_path(params["file"]) if "file" in params else None
        folder = ls.folder_for(params.get("folder"), file=file)
        if not (folder / ".bonsai").is_dir():
            return {"folder": str(folder), "scans": []}
        store = ls.store(folder)
        records = await ls.in_reader(scans_of, store, file)
        return {
            "folder": str(folder),
            "scans": [
                {
                    "id": r.id,
                    "experimentFile": r.experiment_file,
                    "created": r.created,
                    "result": cast(P.ScanData, r.result),
                }
                for r in records
            ],
        }

    @custom(server, P.SCAN_BUDGET)
    async def budget(ls: BonsaiServer, params: P.ScanBudgetParams) -> P.ScanBudgetResult:
        from ..scan.measure import ScanResult

        file = as_path(params["file"]) if "file" in params else None
        rec = None
        for folder in ([ls.folder_for(file=file)] if file is not None else []) + ls.folders():
            if (folder / ".bonsai").is_dir():
                try:
                    rec = await ls.in_reader(scan_by_id, ls.store(folder), params["scan"])
                    break
                except Exception:
                    continue
        if rec is None:
            raise RequestError(P.NOT_FOUND, f"no stored scan '{params['scan']}' in this workspace")
        made = budget_variant(
            ScanResult.from_json(rec.result),
            max_bytes=params.get("maxBytes"),
            max_loss=params.get("maxLoss"),
            name=params.get("name"),
        )
        r = made.recipe
        out: P.ScanBudgetResult = {
            "feasible": r.feasible,
            "message": r.message,
            "choice": r.choice,
            "bytes": r.bytes,
            "baseBytes": made.base_bytes,
            "loss": r.loss,
            "exact": r.exact,
            "name": made.name,
            "variant": made.yaml,
        }
        if file is not None and r.feasible and made.yaml:
            out["edit"] = await ls.in_reader(_insert_edit, ls, file, made.yaml, made.name)
        return out


def document_text(ls: BonsaiServer, file: Path) -> str:
    """The editor's text of `file` when it is open (unsaved edits included), else the file's."""
    doc = ls.workspace.text_documents.get(file.as_uri())
    return doc.source if doc is not None else file.read_text(encoding="utf-8")


def insertion(old: str, new: str) -> tuple[int, str]:
    """`new` is `old` with one piece of text inserted: (its code-point offset in `old`, the piece).
    The offset is the first where they differ, so the piece is `new[p : p + len(new) - len(old)]`
    and `old[:p] + piece + old[p:] == new`."""
    p = 0
    n = min(len(old), len(new))
    while p < n and old[p] == new[p]:
        p += 1
    return p, new[p : p + len(new) - len(old)]


def _insert_edit(ls: BonsaiServer, file: Path, variant: str, name: str) -> P.TextInsert:
    """Where `variant` goes in `file` (after the last variant, with the list's indentation), checked:
    the file with it parses with no new problem and no second variant of that name."""
    from ..experiment import parse_experiment
    from ..scan.write import insert_variant
    from .features import columns

    old = document_text(ls, file)
    before = parse_experiment(old, file)
    if before.experiment is not None and any(v.name == name for v in before.experiment.variants):
        raise WorkError(f"{file.name} already has a variant named {name}: choose another name")
    new = insert_variant(old, variant)
    after = parse_experiment(new, file)
    if len(after.errors) > len(before.errors):
        first = after.errors[len(before.errors)]
        raise WorkError(
            f"the variant would not be valid in {file.name} ({first.message}); nothing was written"
        )
    offset, text = insertion(old, new)
    line = old.count("\n", 0, offset)
    col = offset - (old.rfind("\n", 0, offset) + 1)
    cols = columns(ls, old)
    return {"line": line, "character": cols.to_client(line, col), "text": text}


__all__ = ["document_text", "insertion", "register"]
