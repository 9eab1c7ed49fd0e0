"""`bonsai scan FILE`: the file's `scan:` section measured, stored and read back, a budgeted
variant written into the file and run; bad `scan:` sections are diagnostics at their place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbonsai.cli import main
from modelbonsai.experiment import load_experiment, parse_experiment
from modelbonsai.scan.write import insert_variant
from support.workspace import experiment_head, write_workspace

SCAN = """\
scan:
  settings:
    - quantize.weights: {bits: [2, 4], granularity: tensor}
    - prune.magnitude: {sparsity: 0.5}
  fidelity: both
  max_instances: 16
"""
VARIANTS = "  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n"


def _file(tmp_path: Path, scan: str = SCAN) -> Path:
    head = experiment_head().replace("variants:\n", scan + "variants:\n")
    return write_workspace(tmp_path, head + VARIANTS, "", hidden=(16, 8))


def test_the_scan_section_is_parsed_into_settings(tmp_path: Path) -> None:
    exp = load_experiment(_file(tmp_path)).experiment
    assert exp is not None and exp.scan is not None
    assert [s.label for s in exp.scan.settings] == [
        "quantize.weights(bits=2, granularity=tensor)",
        "quantize.weights(bits=4, granularity=tensor)",
        "prune.magnitude(sparsity=0.5)",
    ]
    assert (exp.scan.fidelity, exp.scan.granularity, exp.scan.max_instances, exp.scan.seed) == (
        "both",
        "layer",
        16,
        3,
    )


@pytest.mark.parametrize(
    ("scan", "needle", "message"),
    [
        ("scan:\n  settings:\n    - cast: {dtype: fp16}\n", "- cast", "cast works on the whole model"),
        (
            "scan:\n  settings:\n    - prune.magnitude: {sparsity: 0.5}\n  fidelity: fast\n",
            "fast",
            "'fidelity' is one of proxy, full, both",
        ),
        ("scan:\n  fidelity: full\n", "scan", "'scan' needs `settings:`"),
        (
            "scan:\n  settings:\n    - prune.magnitude: {sparsity: 0.5, include: ['0.*']}\n",
            "include",
            "write `include` under `scan:`",
        ),
        ("scan:\n  settings:\n    - prune.magnitud: {sparsity: 0.5}\n", "prune.magnitud", "unknown op"),
        (
            "scan:\n  settings:\n    - prune.magnitude: {sparsity: 0.5}\n  batches: 0\n",
            "0\n",
            "'batches' is a positive integer",
        ),
        (
            "scan:\n  settings:\n    - quantize.weights: {bits: [2,3,4,5,6,7,8], group_size: [8,16,32,64,128,256,512,1024,2048,4096]}\n",
            "quantize.weights",
            "at most 64",
        ),
    ],
)
def test_a_bad_scan_section_is_one_diagnostic_at_its_place(
    tmp_path: Path, scan: str, needle: str, message: str
) -> None:
    text = experiment_head().replace("variants:\n", scan + "variants:\n") + VARIANTS
    write_workspace(tmp_path, text, "")
    result = parse_experiment(text, tmp_path / "exp.bonsai.yaml")
    errors = [p for p in result.problems if p.severity == "error"]
    assert len(errors) == 1, [p.message for p in errors]
    (p,) = errors
    assert message in p.message
    line = text.splitlines()[p.range.start_line]
    assert needle.strip() in line


def test_cli_scans_stores_and_writes_a_budgeted_variant_that_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _file(tmp_path)
    assert main(["scan", str(file), "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    scan = out["scan"]
    assert not out["reused"]
    assert [u["name"] for u in scan["units"]] == ["0", "2", "4"]
    assert len(scan["proxy"]) == 3 and all(len(row) == 3 for row in scan["proxy"])
    assert scan["metric"]["name"] == "accuracy" and scan["rankCorrelation"][0] is not None
    base_bytes = sum(scan["baseBytes"])
    # read back from the store, not measured again
    assert main(["scan", str(file), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "read back from the store" in captured.err and "sensitivity per layer" in captured.out
    # a budget of half the scanned bytes, written into the file
    budget = base_bytes // 2
    assert main(["scan", str(file), "--max-size", str(budget), "--name", "half", "--write"]) == 0
    captured = capsys.readouterr()
    assert "wrote variant half" in captured.err
    parsed = load_experiment(file)
    assert parsed.errors == [] and parsed.experiment is not None
    half = parsed.experiment.variant("half")
    assert half is not None and half.parent == "base"
    assert all("include" in call.params for call in half.ops)
    assert main(["run", str(file), "--only", "half"]) == 0
    capsys.readouterr()
    assert main(["show", "half", "-w", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "half" and shown["status"] == "ok"


def test_cli_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_workspace(tmp_path, experiment_head() + VARIANTS, "")
    assert main(["scan", str(file)]) == 2
    assert "has no `scan:` section" in capsys.readouterr().err
    file = _file(tmp_path)
    assert main(["scan", str(file), "--max-size", "lots"]) == 2
    assert "--max-size lots: a size like 300KiB" in capsys.readouterr().err
    # an impossible budget: said, with the closest recipe, and nothing written
    before = file.read_text()
    assert main(["scan", str(file), "--fidelity", "proxy", "--max-size", "10B", "--write"]) == 2
    err = capsys.readouterr().err
    assert "no recipe stores the scanned weights in 10 bytes" in err and "none was written" in err
    assert file.read_text() == before


def test_insert_variant_keeps_the_list_s_indentation_and_what_follows() -> None:
    text = "base:\n  load: m\nvariants:\n    - name: a\n      ops: [prune.magnitude]\n\nseed: 1\n"
    new = insert_variant(text, "  - name: b\n    ops:\n      - restore: {patterns: ['x']}\n")
    assert new == (
        "base:\n  load: m\nvariants:\n    - name: a\n      ops: [prune.magnitude]\n"
        "    - name: b\n      ops:\n        - restore: {patterns: ['x']}\n\nseed: 1\n"
    )
