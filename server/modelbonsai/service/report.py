"""The self-contained HTML report of a folder's lineage (`bonsai report --html`, bonsai/report)."""

from __future__ import annotations

from pathlib import Path

from ..store import LineageStore
from .jobs import ReportJob
from .reporter import Reporter


def report(job: ReportJob, rep: Reporter) -> str:
    """Write the report to `job.output`; returns the path written."""
    from ..share.report_html import write_report

    rep.progress(0.05, "reading the lineage")
    n = max(len(job.compare) - 1, 1)
    done = {"k": 0}

    def progress(message: str) -> None:
        done["k"] += 1
        rep.progress(min(0.05 + 0.9 * done["k"] / n, 0.95), message)

    with LineageStore.open(job.folder) as store:
        path = write_report(store, Path(job.output), compare=job.compare, progress=progress)
    rep.progress(1.0, f"wrote {path}")
    return str(path)
