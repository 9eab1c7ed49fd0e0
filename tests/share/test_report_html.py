"""`bonsai report --html`: one self-contained file, checked as a reader sees it in Chromium
(offline): the scatterplot with its Pareto front, the table and its filters, a recipe, and the
comparisons asked for; plus its data (exact values) and its bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelbonsai.cli import main
from modelbonsai.share.cc_import import import_cc_lineage
from modelbonsai.share.report_html import ReportError, default_axes, render_html, report_data
from modelbonsai.store import LineageStore
from support.workspace import experiment_head, write_workspace

ROOT = Path(__file__).parents[2]
EXTENSION = ROOT / "extension"
CHECK = Path(__file__).with_name("report_check.mjs")
FIXTURE = ROOT / "tests" / "fixtures" / "compress_and_compare" / "models.json"
CHROMIUM = os.environ.get("BONSAI_E2E_CHROMIUM", "/usr/bin/chromium")

VARIANTS = """\
  - name: prune-70
    ops:
      - prune.magnitude: {sparsity: 0.7}
  - name: int8
    ops:
      - quantize.weights: {bits: 8}
  - name: int8-restore
    from: int8
    ops:
      - restore: {patterns: ["0.*"]}
"""


def _in_chromium(report: Path, **env: str) -> dict[str, object]:
    if not (EXTENSION / "node_modules" / "playwright-core").is_dir() or not Path(CHROMIUM).exists():
        pytest.skip("needs the extension's playwright-core and Chromium (make test installs both)")
    node = shutil.which("node")
    assert node is not None
    r = subprocess.run(
        [node, str(CHECK), str(report), str(EXTENSION)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("report")
    exp = write_workspace(ws, experiment_head() + VARIANTS, "")
    assert main(["run", str(exp)]) == 0
    return ws


def test_the_report_reads_in_chromium_offline(lineage: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert (
        main(["report", "--html", "-o", str(out), "--compare", "toy", "prune-70", "int8", "-w", str(lineage)])
        == 0
    )
    seen = _in_chromium(out, REPORT_RANGE="accuracy=0.5")
    assert seen["requests"] == [] and seen["errors"] == [], seen
    assert seen["title"] == f"Bonsai report: {lineage.name}"
    with LineageStore.open(lineage) as store:
        names = [m.name for m in store.list_models()]
        data = report_data(store)
    assert sorted(seen["points"]) == sorted(names) and seen["rows"] == names  # type: ignore[arg-type]
    assert seen["axes"] == [data["defaults"]["x"], data["defaults"]["y"]] == ["stored_size", "accuracy"]
    assert seen["front"] == sorted(_front(data))
    assert seen["mapHeight"] >= 400  # type: ignore[operator]
    assert seen["searched"] == ["int8-restore"]
    assert seen["dimmed"] == sorted(n for n in names if n != "int8-restore")
    acc = {r["name"]: r["metrics"]["accuracy"] for r in data["models"]}
    assert seen["ranged"] == [n for n in names if acc[n] >= 0.5]
    assert "accuracy" in seen["rangeMetrics"]  # type: ignore[operator]
    detail = str(seen["detail"])
    assert "Recipe of int8-restore (from toy, seed 3)" in detail
    # every op from the base with every parameter (defaults included: the recipe that ran)
    assert '1. quantize.weights {"bits":8,"granularity":"channel"' in detail
    assert "2. restore {" in detail and '"patterns":["0.*"]' in detail
    comps = seen["comparisons"]
    assert [c["other"] for c in comps] == ["prune-70", "int8"]  # type: ignore[index,union-attr]
    prune = comps[0]  # type: ignore[index]
    assert prune["heading"] == "prune-70 against toy"
    assert any(c.startswith("agreement with the base") for c in prune["cards"])
    assert any(c.startswith("McNemar's test") for c in prune["cards"])
    assert prune["bars"] == ["0", "2"]  # the two Linear layers, input to output
    assert prune["groups"] >= 3  # the three classes
    assert not seen["horizontalScroll"]


def _front(data: dict[str, object]) -> list[str]:
    """The Pareto front on the default axes (smaller stored size, higher accuracy), directly."""
    rows = [(r["name"], r["metrics"]["stored_size"], r["metrics"]["accuracy"]) for r in data["models"]]  # type: ignore[attr-defined,index]
    return [
        n for n, s, a in rows if not any((s2 <= s and a2 >= a) and (s2 < s or a2 > a) for _, s2, a2 in rows)
    ]


def test_the_data_carries_the_comparison_numbers(lineage: Path) -> None:
    with LineageStore.open(lineage) as store:
        data = report_data(store, compare=["toy", "int8"])
    (c,) = data["comparisons"]
    behavior = c["behavior"]
    assert behavior["kind"] == "classification"
    assert behavior["summary"]["instances"] == 24
    assert 0.0 <= behavior["summary"]["agreement"]["value"] <= 1.0
    assert {g["group"] for g in behavior["groups"] if g["grouping"] == "label"} >= {
        "zero",
        "one",
        "two",
    } or behavior["groups"]
    assert [layer["path"] for layer in c["layers"]] == ["0", "2"]
    assert all(0 < layer["relL2"] < 0.05 for layer in c["layers"])  # 8-bit weights: small, not zero


def test_the_page_embeds_its_data_safely_and_allows_nothing_remote() -> None:
    data = {
        "title": "</script><script>alert(1)</script>",
        "metrics": [],
        "models": [],
        "defaults": {"x": None, "y": None},
        "comparisons": [],
    }
    page = render_html(data)
    assert "<script>alert(1)" not in page
    assert "\\u003c/script\\u003e" in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_default_axes_are_size_across_and_quality_up_never_the_same() -> None:
    metrics = [
        {"key": "latency", "name": "latency", "unit": "ms", "higherIsBetter": False, "headline": True},
        {"key": "accuracy", "name": "accuracy", "unit": "%", "higherIsBetter": True, "headline": True},
        {"key": "stored_size", "name": "stored_size", "unit": "B", "higherIsBetter": False, "headline": True},
    ]
    rows = [{"metrics": {"latency": 1.0, "accuracy": 90.0, "stored_size": 10.0}}] * 2
    assert default_axes(metrics, rows) == {"x": "stored_size", "y": "accuracy"}
    only_size = [metrics[2]]
    assert default_axes(only_size, rows) == {"x": "stored_size", "y": None}


def test_an_imported_lineage_reports_without_comparisons(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        data = report_data(store)
        assert {r["imported"] for r in data["models"]} == {"Compress and Compare"}
        assert data["defaults"] == {"x": "Model Size", "y": "Accuracy"}
        with pytest.raises(ReportError, match="imported from Compress and Compare, it has no weights"):
            report_data(store, compare=["base", "int8"])


def test_bad_input_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--html", "-o", str(tmp_path / "r.html"), "-w", str(tmp_path)]) == 2
    assert "no models in" in capsys.readouterr().err and not (tmp_path / "r.html").exists()
    assert main(["report", "--html", "-w", str(tmp_path)]) == 2
    assert "give it with -o report.html" in capsys.readouterr().err
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
    assert main(["report", "--html", "-o", str(tmp_path), "-w", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert (
        main(["report", "--html", "-o", str(tmp_path / "r.html"), "--compare", "base", "-w", str(tmp_path)])
        == 2
    )
    assert "--compare needs a base model and at least one other" in capsys.readouterr().err
    assert main(["report", "--compare", "base", "int8", "-w", str(tmp_path)]) == 2
    assert "--compare goes with --html" in capsys.readouterr().err
