"""The heavy work itself: runs, comparisons, tiles, instances, exports, as plain functions of a
JSON-like spec and a :class:`Reporter`. They run inside a worker process (see worker.py), so
they know nothing of the server: they report progress, poll cancellation, announce stored
models and emit result pages through the reporter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .. import wire
from ..errors import UserError
from ..store import LineageStore, ModelRecord, StoreError, experiment_path


class Reporter(Protocol):
    def progress(self, fraction: float | None, message: str | None = None) -> None: ...

    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None: ...

    def lineage_changed(self) -> None: ...

    def page(self, data: bytes) -> None: ...


class WorkError(UserError, ValueError):
    """Something the user can fix; the message says what (e.g. a run whose variants failed)."""


def problems_text(file: Path, problems: Sequence[Any]) -> str:
    shown = "; ".join(f"{p.range}: {p.message}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{file.name} has {len(problems)} problem(s), fix them before running: {shown}{more}"


# ---------------------------------------------------------------------------------------------
# Models of a store
# ---------------------------------------------------------------------------------------------
def skeleton_factory(store: LineageStore, rec: ModelRecord) -> Any:
    """A function building the base architecture of `rec` (what its artifact is rebuilt on)."""
    from ..load import load_skeleton

    root = store.root_of(rec)
    if root.base_spec is None:
        raise StoreError(f"model '{rec.name}' descends from '{root.name}', which records no base spec")
    exp_root = store.workspace
    if root.experiment_file:
        exp_root = experiment_path(root.experiment_file, store.workspace).parent
    spec = root.base_spec
    return lambda: load_skeleton(spec, exp_root)


def load_module(store: LineageStore, rec: ModelRecord) -> Any:
    from ..artifacts import load_artifact

    return load_artifact(store.artifact_path(rec), skeleton_factory(store, rec)).module


def experiment_of(store: LineageStore, rec: ModelRecord) -> Any:
    """The parsed experiment file a model came from (for its task), or None."""
    from ..experiment import load_experiment

    root = store.root_of(rec)
    label = rec.experiment_file or root.experiment_file
    if not label:
        return None
    parsed = load_experiment(experiment_path(label, store.workspace))
    return parsed.experiment or parsed.partial


def task_of(store: LineageStore, rec: ModelRecord, max_instances: int | None) -> tuple[Any, dict[str, Any]]:
    """(task instance, task key) for a model's experiment; WorkError when it has no task."""
    from ..tasks import make_task

    exp = experiment_of(store, rec)
    if exp is None or exp.task is None:
        raise WorkError(
            f"model '{rec.name}' comes from no experiment file with a `task:` section; "
            "this comparison needs the task's data"
        )
    from ..runner import evaluation_limit

    limit = evaluation_limit(exp, max_instances)  # as a run would evaluate
    task = make_task(exp, max_instances=limit)
    return task, {"kind": exp.task.kind, "options": exp.task.options, "max_instances": limit}


def _models(spec: dict[str, Any]) -> tuple[LineageStore, ModelRecord, list[ModelRecord]]:
    store = LineageStore.open(spec["folder"])
    return store, store.get_model(spec["base"]), [store.get_model(m) for m in spec["models"]]


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------
def run(spec: dict[str, Any], rep: Reporter) -> dict[str, Any]:
    from ..experiment import load_experiment
    from ..ops.registry import Cancelled
    from ..runner import RunEvent, Runner, make_plan, step_reason, summary, unasked

    file = Path(spec["file"])
    rep.progress(0.0, "planning")
    parsed = load_experiment(file)  # read again: the file may have changed while queued
    if parsed.experiment is None or parsed.errors:
        raise WorkError(problems_text(file, parsed.errors or parsed.problems))
    store = LineageStore.open(spec["folder"])
    try:

        def on_event(e: RunEvent) -> None:
            if e.kind in ("stored", "re-evaluated"):
                rep.lineage_changed()  # each model (or its new metrics) shows up at once

        # The server's instance limit goes to the plan (the one place a run's limit is set).
        plan = make_plan(
            parsed.experiment,
            store,
            only=spec.get("variants"),
            force=bool(spec.get("force")),
            max_instances=spec.get("maxInstances"),
        )
        extra = unasked(plan)
        if extra:
            # A run's one page is what it does without being asked, before it starts: the server
            # marks those models in the lineage and says so in the job's progress.
            rep.page(
                json.dumps(
                    {
                        "unasked": [_unasked_entry(s, step_reason(s)) for s in extra],
                        "message": "first "
                        + "; ".join(
                            f"{'re-evaluates' if s.reevaluate else 'makes'} {s.name} "
                            f"(not asked for: {step_reason(s)})"
                            for s in extra
                        ),
                    }
                ).encode()
            )
        runner = Runner(
            store, device=spec["device"], progress=rep.progress, events=on_event, cancelled=rep.cancelled
        )
        result = runner.run(plan)
    finally:
        store.close()
    if result.status == "cancelled":
        raise Cancelled()
    if result.failed:
        raise WorkError("; ".join(f"{k}: {v}" for k, v in result.failed.items()))
    # The job's last message is what the editor shows of a finished run: layers an op skipped
    # belong in it (they are also stored with each model, metric skipped_layers).
    warned = "".join(f"; warning: {k}: {v}" for k, v in result.warnings.items())
    rep.progress(1.0, summary(result) + warned)
    return {
        "made": result.made,
        "reevaluated": result.reevaluated,
        "upToDate": result.up_to_date,
        "warnings": dict(result.warnings),
    }


def _unasked_entry(st: Any, why: str) -> dict[str, Any]:
    """What the lineage needs to mark a model a run makes or re-evaluates unasked: the stored
    model it re-evaluates or replaces (its id), else the variant whose stale model it remakes."""
    stored = st.existing.id if st.reevaluate and st.existing is not None else st.replaces
    return {
        "id": stored,
        "variant": st.variant or None,
        "why": f"{'re-evaluated' if st.reevaluate else 'made again'} by a running job, not asked for: {why}",
    }


def compare_weights(spec: dict[str, Any], rep: Reporter) -> None:
    from ..compare import api

    store, base, others = _models(spec)
    opts = spec.get("options") or {}
    n = len(others)
    for i, other in enumerate(others):
        out = api.store_weights(
            store,
            base.id,
            other.id,
            include=opts.get("include"),
            exclude=opts.get("exclude"),
            progress=lambda f, m, i=i, name=other.name: rep.progress((i + f) / n, f"{name}: {m}"),  # type: ignore[misc]
            cancelled=rep.cancelled,
        )
        rep.page(out.data)


def compare_activations(spec: dict[str, Any], rep: Reporter) -> None:
    from ..compare import api
    from ..compare.activations import ActivationOptions

    store, base, others = _models(spec)
    o = spec["activationOptions"]
    aopts = ActivationOptions(
        instances=o["instances"],
        batch_size=o["batchSize"],
        mode=o["mode"],
        isolated_scope=o["isolatedScope"],
        modules=o.get("modules"),
    )
    task, task_key = task_of(store, base, spec.get("maxInstances"))
    base_module = load_module(store, base)
    n = len(others)
    for i, other in enumerate(others):
        odir = store.artifact_path(other)
        out = api.activations(
            store,
            base.id,
            other.id,
            base_module,
            lambda other=other: load_module(store, other),  # type: ignore[misc]
            task,
            task_key=task_key,
            device=spec["device"],
            options=aopts,
            kept_indices=lambda odir=odir: api.artifact_kept_indices(odir),  # type: ignore[misc]
            progress=lambda f, m, i=i: rep.progress((i + f) / n, m),  # type: ignore[misc]
            cancelled=rep.cancelled,
        )
        rep.page(out.data)


def compare_behavior(spec: dict[str, Any], rep: Reporter) -> None:
    from ..compare import api
    from ..runner import load_evaluation

    store, base, others = _models(spec)
    opts = spec.get("options") or {}

    def evaluation(rec: ModelRecord) -> Any:
        ev = load_evaluation(store, rec)
        if ev is None:
            raise WorkError(f"model '{rec.name}' has no stored evaluation outputs (was it run with a task?)")
        return ev

    task_key: dict[str, Any] = {}
    groupings = class_names = None
    lm: dict[str, Any] = {}
    try:
        task, task_key = task_of(store, base, spec.get("maxInstances"))
        groupings, class_names = task.groupings, task.class_names()
        lm = {"task": task, "device": spec.get("device") or "cpu"}  # a causal LM gets per-token KL
    except WorkError:
        pass  # stored outputs alone still compare; groups then come from the targets only
    n = len(others)
    for i, other in enumerate(others):
        out = api.behavior(
            store,
            base.id,
            other.id,
            lambda: evaluation(base),
            lambda other=other: evaluation(other),  # type: ignore[misc]
            task_key=task_key,
            groupings=groupings,
            class_names=class_names,
            bootstrap=opts.get("bootstrap", 1000),
            seed=opts.get("seed", 0),
            progress=lambda f, m, i=i: rep.progress((i + f) / n, m),  # type: ignore[misc]
            cancelled=rep.cancelled,
            models=(lambda: load_module(store, base), lambda o=other: load_module(store, o)) if lm else None,  # type: ignore[misc]
            **lm,
        )
        rep.page(out.data)


def tensor_tiles(spec: dict[str, Any], rep: Reporter) -> None:
    from ..compare import api
    from ..compare.sources import artifact_source

    store = LineageStore.open(spec["folder"])
    model = store.get_model(spec["model"])
    mdir = store.artifact_path(model)
    window = tuple(spec["window"])
    if spec.get("source") == "activation":
        rep.page(_activation_tiles(store, model, spec, window).data)
        return
    if spec.get("other"):
        # the difference other - model, in the other's layout (aligned by its kept indices)
        other = store.get_model(spec["other"])
        odir = store.artifact_path(other)
        kept = api.artifact_kept_indices(odir).get(spec["tensor"])
        out = api.weight_tiles(
            store,
            other.id,
            lambda: artifact_source(odir),
            spec["tensor"],
            spec["level"],
            window,
            minus=(model.id, lambda: artifact_source(mdir)),
            kept_indices=kept,
        )  # type: ignore[arg-type]
    else:
        out = api.weight_tiles(
            store, model.id, lambda: artifact_source(mdir), spec["tensor"], spec["level"], window
        )  # type: ignore[arg-type]
    rep.page(out.data)


def _activation_tiles(
    store: LineageStore, model: ModelRecord, spec: dict[str, Any], window: tuple[int, ...]
) -> Any:
    """Tiles of module `spec["tensor"]`'s output for `spec["instances"]` (the task is `model`'s),
    or of the difference other - model, aligned by the other's kept output channels."""
    from ..compare import api

    task, task_key = task_of(store, model, spec.get("maxInstances"))
    module = spec["tensor"]
    common: dict[str, Any] = {
        "source": "activation",
        "task": task,
        "task_key": task_key,
        "instances": spec["instances"],
        "device": spec.get("device") or "cpu",
    }
    if not spec.get("other"):
        return api.tensor_tiles(
            store,
            model.id,
            module,
            spec["level"],
            window,  # type: ignore[arg-type]
            model=lambda: load_module(store, model),
            **common,
        )
    other = store.get_model(spec["other"])
    kept = api.artifact_kept_indices(store.artifact_path(other)).get(module + ".weight") or {}
    return api.tensor_tiles(
        store,
        other.id,
        module,
        spec["level"],
        window,  # type: ignore[arg-type]
        model=lambda: load_module(store, other),
        minus=(model.id, lambda: load_module(store, model)),
        kept_indices={0: kept[0]} if 0 in kept else None,
        **common,
    )


def instances(spec: dict[str, Any], rep: Reporter) -> None:
    """One envelope: each instance as its task renders it (PNG bytes as uint8 tensors), and each
    model's prediction and target for it where stored."""
    import numpy as np

    from ..runner import load_evaluation

    store, first, rest = _models(spec)
    models = [first, *rest]
    ids = [str(i) for i in spec["ids"]]
    task, _key = task_of(store, first, spec.get("maxInstances"))
    out: list[dict[str, Any]] = []
    tensors: dict[str, Any] = {}
    for i, iid in enumerate(ids):
        rep.check_cancelled()
        r = task.render(iid)
        item: dict[str, Any] = {"id": r.id, "kind": r.kind, "label": r.label}
        if r.text is not None:
            item["text"] = r.text
        if r.tokens is not None:
            item["tokens"] = list(r.tokens)
        if r.png is not None:
            tensors[f"png_{i}"] = np.frombuffer(r.png, dtype=np.uint8)
            item["png"] = f"png_{i}"
        out.append(item)
        rep.progress((i + 1) / max(1, len(ids)) * 0.5, f"rendered {i + 1} of {len(ids)}")
    predictions: dict[str, list[Any]] = {}
    targets: list[Any] | None = None
    for rec in models:
        ev = load_evaluation(store, rec)
        if ev is None or ev.predictions is None:
            continue
        pos = {str(x): k for k, x in enumerate(ev.ids)}
        predictions[rec.id] = [ev.predictions[pos[i]].tolist() if i in pos else None for i in ids]
        if targets is None and ev.targets is not None:
            targets = [ev.targets[pos[i]].tolist() if i in pos else None for i in ids]
    names = task.class_names()
    meta = {
        "instances": out,
        "models": [m.id for m in models],
        "predictions": predictions,
        "targets": targets,
        "classNames": list(names) if names else None,
    }
    # token sequences (a causal LM's next-token predictions) as the task decodes them: the panel
    # shows text, not ids, and never guesses a tokenizer
    decoded = {
        m: [None if p is None else task.render_prediction(p) for p in ps] for m, ps in predictions.items()
    }
    if any(x is not None for ps in decoded.values() for x in ps):
        meta["predictionTokens"] = decoded
        meta["targetTokens"] = (
            None if targets is None else [None if t is None else task.render_prediction(t) for t in targets]
        )
    rep.page(wire.encode_result("instances", meta, tensors))


def export(spec: dict[str, Any], rep: Reporter) -> str:
    from ..artifacts.export import export_model

    store = LineageStore.open(spec["folder"])
    rec = store.get_model(spec["id"])
    rep.progress(0.1, f"rebuilding {rec.name}")
    path = export_model(
        store.artifact_path(rec),
        spec["dir"],
        skeleton_factory(store, rec),
        format=spec["format"],
        force=bool(spec.get("force")),
    )
    return str(path)


def measure(spec: dict[str, Any], rep: Reporter) -> list[dict[str, Any]]:
    """Measure the latency of `spec["ids"]` again, each with its base in turn (measure.py); each
    measurement joins its model's history and the lineage shows the most trustworthy one."""
    from ..measure import measure_models

    store = LineageStore.open(spec["folder"])
    try:
        results = measure_models(
            store, list(spec["ids"]), device=spec["device"], progress=rep.progress, cancelled=rep.cancelled
        )
    finally:
        store.close()
    rep.lineage_changed()
    summary = ", ".join(
        f"{r.model.name} {1000 * r.latency.value_s:.3g} ms{' (noisy)' if r.latency.noisy else ''}"
        for r in results
    )
    rep.progress(1.0, f"measured: {summary}")
    return [{"id": r.model.id, "value": 1000 * r.latency.value_s, "noisy": r.latency.noisy} for r in results]


TASKS = {
    "run": run,
    "measure": measure,
    "compare/weights": compare_weights,
    "compare/activations": compare_activations,
    "compare/behavior": compare_behavior,
    "tensor/tiles": tensor_tiles,
    "instances": instances,
    "export": export,
}
