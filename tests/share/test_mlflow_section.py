"""The experiment file's `mlflow:`: every run's models logged afterwards; an MLflow that does not
answer is a warning of the run, never its failure; bad values are diagnostics at their place."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from modelbonsai.cli import main
from modelbonsai.experiment import load_experiment, parse_experiment
from modelbonsai.experiment.mlflow_section import MlflowSpec
from support.workspace import experiment_head, write_workspace

pytest.importorskip("mlflow")
VARIANTS = "  - name: p50\n    ops:\n      - prune.magnitude: {sparsity: 0.5}\n"


def _file(tmp_path: Path, section: str) -> Path:
    return write_workspace(
        tmp_path, experiment_head().replace("variants:\n", section + "variants:\n") + VARIANTS, ""
    )


@pytest.mark.parametrize(
    ("section", "spec"),
    [
        ("mlflow: true\n", MlflowSpec()),
        ("mlflow:\n", MlflowSpec()),
        ("mlflow: false\n", None),
        ("mlflow: {tracking_uri: http://127.0.0.1:5000, experiment: study, artifacts: true}\n",
         MlflowSpec("http://127.0.0.1:5000", "study", True)),
    ],
)  # fmt: skip
def test_the_section_is_parsed(tmp_path: Path, section: str, spec: MlflowSpec | None) -> None:
    exp = load_experiment(_file(tmp_path, section)).experiment
    assert exp is not None and exp.mlflow == spec


@pytest.mark.parametrize(
    ("section", "needle", "message"),
    [
        ("mlflow: [a]\n", "[a]", "'mlflow' is a mapping"),
        ("mlflow: {artifacts: yes please}\n", "yes please", "'artifacts' is true or false"),
        ("mlflow: {experiment: 3}\n", "3}", "'experiment' is a non-empty string"),
        ("mlflow: {trackng_uri: x}\n", "trackng_uri", "tracking_uri"),
    ],
)
def test_bad_values_are_one_diagnostic_at_their_place(
    tmp_path: Path, section: str, needle: str, message: str
) -> None:
    text = experiment_head().replace("variants:\n", section + "variants:\n") + VARIANTS
    write_workspace(tmp_path, text, "")
    errors = [
        p for p in parse_experiment(text, tmp_path / "exp.bonsai.yaml").problems if p.severity == "error"
    ]
    assert len(errors) == 1 and message in errors[0].message, [e.message for e in errors]
    r = errors[0].range
    assert needle in text.splitlines()[r.start_line][r.start_col :]


def test_a_run_logs_its_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    file = _file(tmp_path, "mlflow: {experiment: toy-study}\n")
    assert main(["run", str(file)]) == 0
    assert "mlflow" not in capsys.readouterr().err
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    exp = client.get_experiment_by_name("toy-study")
    assert exp is not None
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"toy", "p50"}
    assert runs["p50"].data.params["op.sparsity"] == "0.5"
    assert runs["p50"].data.tags["mlflow.parentRunId"] == runs["toy"].info.run_id
    capsys.readouterr()
    assert main(["show", "p50", "-w", str(tmp_path), "--json"]) == 0
    stored = {m["name"]: m["value"] for m in json.loads(capsys.readouterr().out)["metrics"]}
    assert runs["p50"].data.metrics["accuracy"] == pytest.approx(stored["accuracy"])
    assert runs["p50"].data.metrics["stored_size"] == stored["stored_size"]


def test_an_unreachable_server_is_a_warning_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    file = _file(tmp_path, f"mlflow: {{tracking_uri: 'http://127.0.0.1:{port}'}}\n")
    assert main(["run", str(file)]) == 0
    err = capsys.readouterr().err
    assert f"warning: mlflow: no MLflow server answers at http://127.0.0.1:{port}" in err
    assert "`bonsai log-mlflow` logs them later" in err
    assert main(["ls", "-w", str(tmp_path), "--json"]) == 0  # the models are stored
    assert '"p50"' in capsys.readouterr().out
