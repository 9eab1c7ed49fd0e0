"""THE table of jobs: each spec type (jobs.py) and the one function that handles it.

To add a job: a frozen dataclass in jobs.py deriving `JobSpec[<its result>]`, a handler
`fn(spec, reporter) -> result` in a module of this package, and one row below. Both faces then
reach it: the CLI calls `handle(spec)`, the language server sends the spec to its worker, which
calls `handle` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from . import compare, export, report, run, scan
from .jobs import (
    CompareActivationsJob,
    CompareBehaviorJob,
    CompareWeightsJob,
    ExportJob,
    InstancesJob,
    JobSpec,
    MeasureJob,
    ReportJob,
    RunJob,
    ScanJob,
    TilesJob,
)
from .reporter import QuietReporter, Reporter

R = TypeVar("R")

HANDLERS: dict[type[JobSpec[Any]], Callable[[Any, Reporter], Any]] = {
    RunJob: run.run,
    MeasureJob: run.measure,
    ExportJob: export.export,
    ScanJob: scan.scan,
    ReportJob: report.report,
    CompareWeightsJob: compare.compare_weights,
    CompareActivationsJob: compare.compare_activations,
    CompareBehaviorJob: compare.compare_behavior,
    TilesJob: compare.tensor_tiles,
    InstancesJob: compare.instances,
}


def handle(job: JobSpec[R], rep: Reporter | None = None) -> R:
    """Do `job`, reporting through `rep` (default: keep pages and messages, never cancelled)."""
    handler = HANDLERS.get(type(job))
    if handler is None:  # a spec without a row: a programming error, said plainly
        raise TypeError(f"no handler for {type(job).__name__}: add it to service/table.py HANDLERS")
    return cast(R, handler(job, rep if rep is not None else QuietReporter()))
