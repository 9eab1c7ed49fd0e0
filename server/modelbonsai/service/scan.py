"""Sensitivity scans: the job that measures an experiment file's `scan:` section (or reads it back
from the store), and what both faces read of stored scans (the list, one scan, a budgeted recipe
as the variant text to write)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFoundError, UserError
from ..store import LineageStore
from .jobs import ScanDone, ScanJob
from .models import WorkError, problems_text
from .reporter import Reporter

if TYPE_CHECKING:
    from ..scan.budget import Recipe
    from ..scan.measure import ScanResult
    from ..store.scans import ScanRecord

#: what a file without a `scan:` section is told to add (the CLI and the editor say the same)
SCAN_EXAMPLE = (
    "scan:\n"
    "  settings:\n"
    "    - quantize.weights: {bits: 4, granularity: group, group_size: 32}\n"
    "    - prune.magnitude: {sparsity: 0.5}\n"
    "  fidelity: proxy"
)


class NoScanSection(UserError):
    """The experiment file has no `scan:` section to measure."""


def no_scan_section(file: Path) -> NoScanSection:
    return NoScanSection(f"{file.name} has no `scan:` section: add one, e.g.\n{SCAN_EXAMPLE}")


def scan(job: ScanJob, rep: Reporter) -> ScanDone:
    """Measure the file's scan (or read it back when the same scan is stored); a cancelled scan
    raises ops.Cancelled and stores nothing."""
    from ..experiment import load_experiment
    from ..scan.experiment import experiment_scan_fingerprint, scan_experiment
    from ..store.scans import get_scan

    file = Path(job.file)
    rep.progress(0.0, "reading the experiment file")
    parsed = load_experiment(file)  # read again: the file may have changed while queued
    if parsed.experiment is None or parsed.errors:
        raise WorkError(problems_text(file, parsed.errors or parsed.problems))
    exp = parsed.experiment
    spec = exp.scan
    if spec is None:
        raise no_scan_section(file)
    if job.fidelity is not None:
        spec = dataclasses.replace(spec, fidelity=job.fidelity)
    store = LineageStore.open(job.folder)
    try:
        result, reused = scan_experiment(
            exp,
            store,
            spec,
            device=job.device,
            force=job.force,
            allow_pickle=job.allow_pickle,
            progress=lambda f, m: rep.progress(f, m),
            cancelled=rep.cancelled,
        )
        rec = get_scan(store, experiment_scan_fingerprint(exp, store, spec))
    finally:
        store.close()
    if rec is None:  # stored a moment ago in this process: only a concurrent --force replaces it
        raise WorkError(f"the scan of {file.name} was not found in the store after it was measured")
    rep.lineage_changed()
    n_units, n_settings = len(result.units), len(result.spec.settings)
    how = "read back from the store" if reused else "measured"
    rep.progress(1.0, f"scan {how}: {n_units} {spec.granularity}s × {n_settings} settings")
    return ScanDone(id=rec.id, reused=reused, units=n_units, settings=n_settings)


# -- reading stored scans (no job: the store is read as it is) --------------------------------------
def scans_of(store: LineageStore, file: Path | None = None) -> list[ScanRecord]:
    """The stored scans of the workspace (of one experiment file when given), newest first."""
    from ..fingerprints import experiment_label
    from ..store.scans import list_scans

    label = None if file is None else experiment_label(file, store.workspace)
    return list_scans(store, label)


def scan_by_id(store: LineageStore, scan_id: str) -> ScanRecord:
    from ..store.scans import list_scans

    for rec in list_scans(store):
        if rec.id == scan_id:
            return rec
    raise NotFoundError(f"no stored scan '{scan_id}' in {store.workspace.name}")


@dataclasses.dataclass(frozen=True)
class BudgetedVariant:
    """A recipe solved over a stored scan, and the variant that states it."""

    recipe: Recipe
    name: str
    yaml: str  # the variant, written at two spaces ("" when the recipe keeps every layer)
    base_bytes: int  # the scanned weights as the base stores them


def budget_variant(
    result: ScanResult,
    *,
    max_bytes: int | None = None,
    max_loss: float | None = None,
    name: str | None = None,
    parent: str | None = None,
) -> BudgetedVariant:
    """The best recipe under one budget (a size in bytes, or a loss against the base) as a variant.
    A budget no recipe meets gives the closest recipe with `feasible` False and its message."""
    from ..scan.budget import under_size, variant_yaml, within_loss
    from ..scan.measure import ScanError

    if (max_bytes is None) == (max_loss is None):
        raise UserError("a budget is a size in bytes or a loss against the base: give exactly one")
    if max_bytes is not None:
        if max_bytes <= 0:
            raise UserError(f"a size budget is a positive number of bytes, not {max_bytes}")
        recipe = under_size(result, max_bytes)
        label = f"budget-{_size_label(max_bytes)}"
    else:
        assert max_loss is not None
        if max_loss < 0:
            raise UserError("a loss budget is how much worse than the base a recipe may be: 0 or more")
        recipe = within_loss(result, max_loss)
        label = f"within-{max_loss:g}"
    name = name or label
    try:
        text = variant_yaml(result, recipe, name, parent)
    except ScanError:  # every layer kept as in the base: nothing to write
        text = ""
    return BudgetedVariant(recipe, name, text, sum(result.base_bytes))


def _size_label(n: int) -> str:
    for unit, size in (("MB", 1000**2), ("KB", 1000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n}B"


__all__ = [
    "SCAN_EXAMPLE",
    "BudgetedVariant",
    "NoScanSection",
    "budget_variant",
    "no_scan_section",
    "scan",
    "scan_by_id",
    "scans_of",
]
