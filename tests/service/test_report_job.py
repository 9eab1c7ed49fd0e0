"""The report job (bonsai/report, `bonsai report --html`): the service writes the page for either face."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelbonsai.service import ReportJob, handle
from modelbonsai.share.cc_import import import_cc_lineage
from modelbonsai.share.report_html import ReportError
from modelbonsai.store import LineageStore

FIXTURE = Path(__file__).parents[1] / "fixtures" / "compress_and_compare" / "models.json"


def test_the_report_job_writes_the_page_of_the_folder(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
    out = tmp_path / "r.html"
    assert handle(ReportJob(folder=str(tmp_path), output=str(out))) == str(out)
    page = out.read_text(encoding="utf-8")
    data = json.loads(
        re.search(r'<script type="application/json" id="bonsai-data">(.*?)</script>', page, re.S).group(1)
    )  # type: ignore[union-attr]
    assert [m["name"] for m in data["models"]] == [
        "base",
        "pruning0.5",
        "pruning0.5_restorelayernorms",
        "int8",
    ]


def test_the_report_job_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    LineageStore.open(tmp_path).close()
    with pytest.raises(ReportError, match="no models in"):
        handle(ReportJob(folder=str(tmp_path), output=str(tmp_path / "r.html")))
    assert not (tmp_path / "r.html").exists()
