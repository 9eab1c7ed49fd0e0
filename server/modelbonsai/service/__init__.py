"""The service: every job the CLI or the language server asks of the engine, in one place.

The road of a request: a face (a `bonsai` command, an LSP request) builds the job's spec, a frozen
dataclass (jobs.py), once from what it was given; `handle(spec, reporter)` (table.py) runs the
one handler of that spec over the engine; results come back as the handler's return value and,
for comparisons, tiles and instances, as result pages (wire envelopes, `reporter.page`). The
language server sends the spec as it is to its worker process (lsp/worker.py), which calls
`handle` there; the CLI calls it in process. Comparisons go through the store's result cache
(compare/api.py), so what one face computed the other reads back.

Imports nothing from `lsp` or `cli`; importing this package costs no torch (handlers import the
engine when they run).
"""

from __future__ import annotations

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
    RunPlanned,
    ScanDone,
    ScanJob,
    TilesJob,
    UnaskedModel,
)
from .models import WorkError, problems_text
from .reporter import QuietReporter, Reporter
from .run import failures_text
from .table import HANDLERS, handle

__all__ = [
    "HANDLERS",
    "CompareActivationsJob",
    "CompareBehaviorJob",
    "CompareWeightsJob",
    "ExportJob",
    "InstancesJob",
    "JobSpec",
    "MeasureJob",
    "QuietReporter",
    "ReportJob",
    "Reporter",
    "RunJob",
    "RunPlanned",
    "ScanDone",
    "ScanJob",
    "TilesJob",
    "UnaskedModel",
    "WorkError",
    "failures_text",
    "handle",
    "problems_text",
]
