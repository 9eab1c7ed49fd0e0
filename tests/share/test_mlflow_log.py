"""`bonsai log-mlflow`: each model an MLflow run (recipe as params, metrics, parent as a tag and as
MLflow's nesting), checked through MLflow's own client against its local file store."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modelbonsai.cli import main
from modelbonsai.share.cc_import import import_cc_lineage
from modelbonsai.share.mlflow_log import MlflowError, log_lineage
from modelbonsai.store import LineageStore

pytest.importorskip("mlflow")
FIXTURE = Path(__file__).parents[1] / "fixtures" / "compress_and_compare" / "models.json"


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _runs(uri: str, experiment: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_each_model_is_a_run_with_its_recipe_metrics_and_parent(tmp_path: Path) -> None:
    ws, mlruns = tmp_path / "ws", tmp_path / "mlruns"
    ws.mkdir()
    with LineageStore.open(ws) as store:
        import_cc_lineage(store, FIXTURE)
        ids = {m.name: m.id for m in store.list_models()}
        result = log_lineage(store, tracking_uri=str(mlruns), experiment="study")
    assert sorted(result.created) == sorted(ids) and result.updated == []
    runs = _runs(mlruns.as_uri(), "study")
    assert set(runs) == set(ids)
    restore = runs["pruning0.5_restorelayernorms"]
    assert restore.data.params == {
        "seed": "0",
        "op": "Restore",
        "op.layers": "layernorms",
        "recipe": 'Pruning(sparsity=0.5) -> Restore(layers="layernorms")',
        "base": "base",
        "imported_from": "Compress and Compare",
    }
    assert restore.data.metrics == {
        "Accuracy": 90.25,
        "Latency": 11.5,
        "Model Size": 700500.0,
        "Sparsity": 40.0,
    }
    tags = restore.data.tags
    assert (tags["bonsai.model_id"], tags["bonsai.parent"], tags["bonsai.parent_id"]) == (
        ids["pruning0.5_restorelayernorms"],
        "pruning0.5",
        ids["pruning0.5"],
    )
    # MLflow's own nesting: the parent's run, so its UI shows the lineage as nested runs
    assert tags["mlflow.parentRunId"] == runs["pruning0.5"].info.run_id
    assert (
        runs["base"].data.params["recipe"] == "(base model)"
        and "mlflow.parentRunId" not in runs["base"].data.tags
    )
    assert restore.info.status == "FINISHED"


def test_logging_again_updates_the_same_runs(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        first = log_lineage(store, tracking_uri=str(tmp_path / "mlruns"))
        again = log_lineage(store, tracking_uri=str(tmp_path / "mlruns"))
    assert again.created == [] and sorted(again.updated) == sorted(first.created)
    assert again.runs == first.runs
    assert len(_runs((tmp_path / "mlruns").as_uri(), tmp_path.name)) == 4


def test_named_models_bring_their_ancestors(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        result = log_lineage(
            store, tracking_uri=str(tmp_path / "mlruns"), models=["pruning0.5_restorelayernorms"]
        )
    assert result.created == ["base", "pruning0.5", "pruning0.5_restorelayernorms"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_does_not_answer_fails_with_its_address_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        before = [(m.id, m.name, m.parent_id) for m in store.list_models()]
    uri = f"http://127.0.0.1:{_free_port()}"
    with (
        LineageStore.open(tmp_path) as store,
        pytest.raises(MlflowError, match=f"no MLflow server answers at {uri}"),
    ):
        log_lineage(store, tracking_uri=uri)
    assert main(["log-mlflow", "--tracking-uri", uri, "-w", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no MLflow server answers at {uri}" in err and "Traceback" not in err
    with LineageStore.open(tmp_path) as store:
        assert [(m.id, m.name, m.parent_id) for m in store.list_models()] == before


ARCH = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    """
)
EXPERIMENT = textwrap.dedent(
    """
    base:
      name: toy
      load: model.safetensors
      factory: arch.py:build
    variants:
      - name: prune-50
        ops:
          - prune.magnitude: {sparsity: 0.5}
    """
)


def test_cli_logs_a_bonsai_run_with_its_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelbonsai.artifacts.artifact import read_manifest  # noqa: F401  (the store's own reader)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "arch.py").write_text(ARCH)
    (tmp_path / "exp.bonsai.yaml").write_text(EXPERIMENT)
    assert main(["run", str(tmp_path / "exp.bonsai.yaml")]) == 0
    mlruns = tmp_path / "mlruns"
    assert (
        main(
            [
                "log-mlflow",
                "--artifacts",
                "--experiment",
                "toy",
                "--tracking-uri",
                str(mlruns),
                "-w",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "logged 2 models to MLflow" in capsys.readouterr().err
    runs = _runs(mlruns.as_uri(), "toy")
    pruned = runs["prune-50"]
    assert pruned.data.params["op"] == "prune.magnitude" and pruned.data.params["op.sparsity"] == "0.5"
    assert pruned.data.params["variant"] == "prune-50" and pruned.data.params["experiment_file"].endswith(
        "exp.bonsai.yaml"
    )
    assert (
        "sparsity" in " ".join(pruned.data.metrics) or pruned.data.metrics
    )  # Bonsai's own metrics came along
    from mlflow.tracking import MlflowClient

    files = [
        f.path for f in MlflowClient(tracking_uri=mlruns.as_uri()).list_artifacts(pruned.info.run_id, "model")
    ]
    assert any(f.endswith(".safetensors") for f in files), files
