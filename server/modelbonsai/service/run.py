"""Runs and measurements: the jobs that make or re-measure models and write the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..store import LineageStore
from .jobs import MeasureJob, RunJob, RunPlanned, UnaskedModel
from .models import WorkError, problems_text
from .reporter import Reporter

if TYPE_CHECKING:
    from ..experiment.mlflow_section import MlflowSpec
    from ..measure import Measured
    from ..runner import PlannedStep, RunResult


def run(job: RunJob, rep: Reporter) -> RunResult:
    """Plan and run; returns the runner's result, failures included (each face says them its
    own way: the CLI lists them, the language server fails the job). A cancelled run raises
    ops.Cancelled."""
    from ..experiment import load_experiment
    from ..ops.registry import Cancelled
    from ..runner import RunEvent, Runner, describe_plan, make_plan, summary, unasked

    file = Path(job.file)
    rep.progress(0.0, "planning")
    parsed = load_experiment(file)  # read again: the file may have changed while queued
    if parsed.experiment is None or parsed.errors:
        raise WorkError(problems_text(file, parsed.errors or parsed.problems))
    store = LineageStore.open(job.folder)
    try:

        def on_event(e: RunEvent) -> None:
            if e.kind in ("stored", "re-evaluated"):
                rep.lineage_changed()  # each model (or its new metrics) shows up at once
            rep.run_event(e)

        # The job's instance limit goes to the plan (the one place a run's limit is set).
        plan = make_plan(
            parsed.experiment,
            store,
            only=list(job.variants) if job.variants else None,
            force=job.force,
            max_instances=job.max_instances,
        )
        extra = unasked(plan)
        rep.planned(
            RunPlanned(
                unasked=tuple(_unasked_model(s) for s in extra),
                message=(
                    "first "
                    + "; ".join(
                        f"{'re-evaluates' if s.reevaluate else 'makes'} {s.name} (not asked for: {_why(s)})"
                        for s in extra
                    )
                    if extra
                    else ""
                ),
                lines=tuple(describe_plan(plan)),
                bars=(plan.steps[0].name, *plan.variants()),
                steps=tuple(s.name for s in plan.steps),
            )
        )
        runner = Runner(
            store,
            device=job.device,
            progress=rep.progress,
            events=on_event,
            cancelled=rep.cancelled,
            allow_pickle=job.allow_pickle,
        )
        result = runner.run(plan)
        mlflow = parsed.experiment.mlflow
        if mlflow is not None and result.status != "cancelled" and result.models:
            result.warnings.update(_log_to_mlflow(store, mlflow, result, file, rep))
    finally:
        store.close()
    if result.status == "cancelled":
        raise Cancelled()
    if not result.failed:
        # The job's last message is what the editor shows of a finished run: layers an op
        # skipped belong in it (they are also stored with each model, metric skipped_layers).
        warned = "".join(f"; warning: {k}: {v}" for k, v in result.warnings.items())
        rep.progress(1.0, summary(result) + warned)
    return result


def _log_to_mlflow(
    store: LineageStore, spec: MlflowSpec, result: RunResult, file: Path, rep: Reporter
) -> dict[str, str]:
    """The experiment file's `mlflow:`: log the run's models (and their ancestors). What MLflow
    answers never fails the run: a problem is the run's warning, and the models stay stored."""
    from ..share.mlflow_log import MlflowError, log_lineage
    from .export import safetensors_writer

    rep.progress(0.99, "logging to MLflow")
    ids = sorted({m.id for m in result.models.values()})
    try:
        done = log_lineage(
            store,
            # the file's, else $MLFLOW_TRACKING_URI, else mlruns/ beside the file
            tracking_uri=spec.tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or str(file.parent / "mlruns"),
            experiment=spec.experiment,
            models=ids,
            artifacts=safetensors_writer(store) if spec.artifacts else None,
        )
    except MlflowError as e:
        return {"mlflow": f"{e}; the models are stored, `bonsai log-mlflow` logs them later"}
    rep.progress(0.995, f"logged {len(done.runs)} models to MLflow at {done.tracking_uri}")
    return {}


def failures_text(result: RunResult) -> str:
    """A run's failures in one line (what a failed job says)."""
    return "; ".join(f"{k}: {v}" for k, v in result.failed.items())


def _why(st: PlannedStep) -> str:
    from ..runner import step_reason

    return step_reason(st)


def _unasked_model(st: PlannedStep) -> UnaskedModel:
    """What the lineage needs to mark a model a run makes or re-evaluates unasked: the stored
    model it re-evaluates or replaces (its id), else the variant whose stale model it remakes."""
    stored = st.existing.id if st.reevaluate and st.existing is not None else st.replaces
    verb = "re-evaluated" if st.reevaluate else "made again"
    return UnaskedModel(
        id=stored,
        variant=st.variant or None,
        why=f"{verb} by a running job, not asked for: {_why(st)}",
    )


def measure(job: MeasureJob, rep: Reporter) -> list[Measured]:
    """Measure the latency of `job.models` again, each with its base in turn (measure.py); each
    measurement joins its model's history and the lineage shows the most trustworthy one."""
    from ..measure import measure_models

    store = LineageStore.open(job.folder)
    try:
        results = measure_models(
            store,
            list(job.models),
            device=job.device,
            progress=rep.progress,
            cancelled=rep.cancelled,
            allow_pickle=job.allow_pickle,
        )
    finally:
        store.close()
    rep.lineage_changed()
    summary = ", ".join(
        f"{r.model.name} {1000 * r.latency.value_s:.3g} ms{' (noisy)' if r.latency.noisy else ''}"
        for r in results
    )
    rep.progress(1.0, f"measured: {summary}")
    return results
