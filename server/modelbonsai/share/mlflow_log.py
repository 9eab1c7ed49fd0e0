"""Log a lineage to MLflow: one MLflow run per model, where teams already keep their runs.

Each model becomes a run named after it, in one MLflow experiment (by default the workspace's
folder name). Its recipe is the run's params: `op` and `op.<param>` for the op that made it,
`recipe` for the whole chain of ops from the base, and the seed; its metrics are the run's
metrics; its parent is a tag (`bonsai.parent`) and, since the parent's run is logged first, MLflow's
own nesting tag (`mlflow.parentRunId`), so the MLflow UI shows the lineage as nested runs.
Logging again updates the same runs (found by the `bonsai.model_id` tag) instead of adding copies.

Only reads the store: whatever MLflow answers, the lineage is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..store import LineageStore
from ..store.records import MetricRecord, ModelRecord

#: MLflow's limit on a param value's length (longer values are cut, with a mark)
_PARAM_MAX = 6000
_KEY_BAD = re.compile(r"[^\w\-. /:]")


class MlflowError(UserError):
    """MLflow could not be reached or refused what was sent: names the tracking URI."""


@dataclass
class LogResult:
    experiment_id: str
    tracking_uri: str
    created: list[str] = field(default_factory=list)  # model names given a new run
    updated: list[str] = field(default_factory=list)  # model names whose run was logged again
    runs: dict[str, str] = field(default_factory=dict)  # model id -> MLflow run id


def recipe_params(store: LineageStore, rec: ModelRecord) -> dict[str, str]:
    """The recipe of a model as MLflow params (strings): its op and parameters, the chain of ops
    from its base, its seed and where it was declared."""
    chain: list[ModelRecord] = []
    cur: ModelRecord | None = rec
    while cur is not None and cur.parent_id is not None:
        chain.append(cur)
        cur = store.get_model(cur.parent_id)
    chain.reverse()
    params: dict[str, str] = {"seed": str(rec.seed)}
    if rec.op:
        params["op"] = rec.op
        for k, v in sorted(rec.params.items()):
            params[_key(f"op.{k}")] = _text(v)
    params["recipe"] = _text(" -> ".join(_call(m) for m in chain) or "(base model)")
    params["base"] = cur.name if cur is not None else rec.name
    if rec.experiment_file:
        params["experiment_file"] = rec.experiment_file
    if rec.variant:
        params["variant"] = rec.variant
    if rec.imported:
        params["imported_from"] = str(rec.imported.get("tool", ""))
    return params


def _call(m: ModelRecord) -> str:
    args = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(m.params.items()))
    return f"{m.op}({args})"


def _text(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= _PARAM_MAX else s[: _PARAM_MAX - 1] + "…"


def _key(name: str) -> str:
    """An MLflow param or metric key: letters, digits, `_ - . space / :` only."""
    return _KEY_BAD.sub("_", name)


def metric_values(metrics: list[MetricRecord]) -> dict[str, float]:
    """The metrics MLflow can hold (finite numbers), under MLflow-safe keys."""
    out: dict[str, float] = {}
    for x in metrics:
        if x.value == x.value and abs(x.value) != float("inf"):
            out[_key(x.name)] = float(x.value)
    return out


def log_lineage(
    store: LineageStore,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    models: list[str] | None = None,
    artifacts: Callable[[ModelRecord, Path], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LogResult:
    """Log each model of the store (or of `models`, with their ancestors) as an MLflow run.

    `artifacts(model, folder)`, when given, writes a model's export into `folder`, which is then
    logged as the run's artifacts (the CLI passes a safetensors export).
    """
    uri = resolve_tracking_uri(tracking_uri, store.workspace)
    wanted = _with_ancestors(store, models)
    name = experiment or store.workspace.name or "bonsai"
    with _mlflow_errors(uri):
        client = _client(uri)
        found = client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found is not None else client.create_experiment(name)
        result = LogResult(experiment_id=exp_id, tracking_uri=uri)
        existing = {
            r.data.tags.get("bonsai.model_id"): r.info.run_id
            for r in client.search_runs(
                [exp_id], filter_string="tags.`bonsai.model_id` != ''", max_results=50000
            )
        }
        all_metrics = store.all_metrics()
        for rec in wanted:
            run_id = _log_one(client, exp_id, store, rec, all_metrics.get(rec.id, []), existing, result)
            if artifacts is not None and not rec.imported:
                _log_artifacts(client, run_id, rec, artifacts)
            if progress is not None:
                progress(f"{rec.name}: run {run_id}")
    return result


def _log_one(
    client: Any,
    exp_id: str,
    store: LineageStore,
    rec: ModelRecord,
    metrics: list[MetricRecord],
    existing: dict[str | None, str],
    result: LogResult,
) -> str:
    from mlflow.entities import Metric, Param, RunTag

    tags = {
        "bonsai.model_id": rec.id,
        "bonsai.model": rec.name,
        "bonsai.parent": "",
        "mlflow.note.content": f"Bonsai model `{rec.name}` ({rec.id})",
    }
    if rec.parent_id is not None:
        parent = store.get_model(rec.parent_id)
        tags["bonsai.parent"] = parent.name
        tags["bonsai.parent_id"] = parent.id
        parent_run = result.runs.get(parent.id) or existing.get(parent.id)
        if parent_run:
            tags["mlflow.parentRunId"] = parent_run
    if rec.aliases:
        tags["bonsai.aliases"] = ", ".join(rec.aliases)
    run_id = existing.get(rec.id)
    params = recipe_params(store, rec)
    if run_id is None:
        run = client.create_run(
            exp_id, run_name=rec.name, start_time=int((rec.created or time.time()) * 1000)
        )
        run_id = run.info.run_id
        result.created.append(rec.name)
    else:
        # a param cannot change value in MLflow: a model's recipe never changes, so only new keys
        logged = client.get_run(run_id).data.params
        params = {k: v for k, v in params.items() if k not in logged}
        result.updated.append(rec.name)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metric_values(metrics).items()],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status="FINISHED" if rec.status == "ok" else "FAILED")
    result.runs[rec.id] = run_id
    return run_id


def _log_artifacts(
    client: Any, run_id: str, rec: ModelRecord, write: Callable[[ModelRecord, Path], None]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bonsai-mlflow-") as tmp:
        folder = Path(tmp) / rec.name.replace("/", "_")
        write(rec, folder)
        client.log_artifacts(run_id, str(folder), artifact_path="model")


def _with_ancestors(store: LineageStore, names: list[str] | None) -> list[ModelRecord]:
    every = store.list_models()  # parents before children (created order)
    if not names:
        return every
    keep: set[str] = set()
    for n in names:
        cur: ModelRecord | None = store.get_model(n)
        while cur is not None and cur.id not in keep:
            keep.add(cur.id)
            cur = store.get_model(cur.parent_id) if cur.parent_id else None
    return [m for m in every if m.id in keep]


def resolve_tracking_uri(uri: str | None, workspace: Path) -> str:
    """The URI to log to: the one given, else MLFLOW_TRACKING_URI, else `mlruns/` in the workspace
    (MLflow's own default). A plain path becomes a `file:` URI."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or str(workspace / "mlruns")
    if "://" not in uri and not uri.startswith(("file:", "databricks", "sqlite:")):
        uri = Path(uri).expanduser().resolve().as_uri()
    return uri


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MlflowError(
            "MLflow is not installed: pip install 'modelbonsai[mlflow]' (or mlflow-skinny)"
        ) from None
    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance and refuses it unless asked; a user who
        # names a folder asks for it (a setting of their own wins).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    return client


def _check_server(uri: str) -> None:
    """Fail at once, with the address, when no MLflow server answers (MLflow's own client retries
    for minutes before it gives up)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as reply:
            if reply.status >= 400:
                raise MlflowError(f"MLflow at {uri} answered {reply.status} to /health")
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise MlflowError(f"MLflow at {uri} answered {e.code} to /health") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MlflowError(f"no MLflow server answers at {uri} ({reason}); nothing was logged") from None


@contextmanager
def _mlflow_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowError:
        raise
    except Exception as e:
        from mlflow.exceptions import MlflowException

        if isinstance(e, MlflowException):
            raise MlflowError(f"MLflow at {uri}: {e.message}") from None
        raise
