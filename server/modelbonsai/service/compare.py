"""Comparisons, tiles and instances: jobs that read stored models and emit result pages (one wire
envelope per compared model, in the order asked), every one cached in the store by
:mod:`modelbonsai.compare.api` (keyed by the models and the options), so a comparison either face
asked for before is served from that cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import LineageStore, ModelRecord
from .jobs import CompareActivationsJob, CompareBehaviorJob, CompareWeightsJob, InstancesJob, TilesJob
from .models import WorkError, load_module, open_models, task_of
from .reporter import Reporter

if TYPE_CHECKING:
    from torch import nn

    from ..compare.api import Outcome
    from ..tasks.base import Evaluation


def _share(rep: Reporter, i: int, n: int, prefix: str = "") -> Callable[[float, str], None]:
    """Progress of the i-th of n compared models as its share of the whole job."""
    return lambda f, m: rep.progress((i + f) / n, f"{prefix}{m}")


def compare_weights(job: CompareWeightsJob, rep: Reporter) -> None:
    # compare.stored, not compare.api: a weights-only comparison imports no torch (CLI start-up)
    from ..compare import stored

    store, base, others = open_models(job.folder, job.base, job.models)
    for i, other in enumerate(others):
        out = stored.store_weights(
            store,
            base.id,
            other.id,
            include=job.include,
            exclude=job.exclude,
            progress=_share(rep, i, len(others), f"{other.name}: "),
            cancelled=rep.cancelled,
        )
        rep.page(out.data)


def compare_activations(job: CompareActivationsJob, rep: Reporter) -> None:
    from ..compare import api

    store, base, others = open_models(job.folder, job.base, job.models)
    task, task_key = task_of(store, base, job.max_instances)
    base_module = load_module(store, base)
    for i, other in enumerate(others):
        odir = store.artifact_path(other)
        out = api.activations(
            store,
            base.id,
            other.id,
            base_module,
            _loader(store, other),
            task,
            task_key=task_key,
            device=job.device,
            options=job.options,
            kept_indices=_kept(odir),
            progress=_share(rep, i, len(others)),
            cancelled=rep.cancelled,
        )
        rep.page(out.data)


def _loader(store: LineageStore, rec: ModelRecord) -> Callable[[], nn.Module]:
    """The module of `rec`, built only when called (a cache hit loads nothing)."""
    return lambda: load_module(store, rec)


def _kept(folder: Path) -> Callable[[], dict[str, dict[int, list[int]]]]:
    """The kept indices of the artifact in `folder`, read only when called."""
    from ..compare.stored import artifact_kept_indices

    return lambda: artifact_kept_indices(folder)


def _evaluator(store: LineageStore, rec: ModelRecord) -> Callable[[], Evaluation]:
    """The stored evaluation outputs of `rec`, read only when called (a cache hit reads none)."""

    def evaluation() -> Evaluation:
        from ..runner import load_evaluation

        ev = load_evaluation(store, rec)
        if ev is None:
            raise WorkError(f"model '{rec.name}' has no stored evaluation outputs (was it run with a task?)")
        return ev

    return evaluation


def compare_behavior(job: CompareBehaviorJob, rep: Reporter) -> None:
    from ..compare import api

    store, base, others = open_models(job.folder, job.base, job.models)
    task_key: dict[str, Any] = {}
    groupings = class_names = None
    task = None
    try:
        task, task_key = task_of(store, base, job.max_instances)
        groupings, class_names = task.groupings, task.class_names()
    except WorkError:
        pass  # stored outputs alone still compare; groups then come from the targets only
    with_kl = job.token_kl and task is not None  # a causal LM gets its true per-token KL
    for i, other in enumerate(others):
        out = api.behavior(
            store,
            base.id,
            other.id,
            _evaluator(store, base),
            _evaluator(store, other),
            task_key=task_key,
            groupings=groupings,
            class_names=class_names,
            bootstrap=job.bootstrap,
            seed=job.seed,
            progress=_share(rep, i, len(others)),
            cancelled=rep.cancelled,
            models=(_loader(store, base), _loader(store, other)) if with_kl else None,
            task=task if with_kl else None,
            device=job.device,
        )
        rep.page(out.data)


def tensor_tiles(job: TilesJob, rep: Reporter) -> None:
    from ..compare import api
    from ..compare.sources import artifact_source

    store = LineageStore.open(job.folder)
    model = store.get_model(job.model)
    if job.source == "activation":
        rep.page(_activation_tiles(store, model, job).data)
        return
    mdir = store.artifact_path(model)
    if job.other is None:
        out = api.weight_tiles(
            store, model.id, lambda: artifact_source(mdir), job.tensor, job.level, job.window
        )
    else:
        # the difference other - model, in the other's layout (aligned by its kept indices)
        other = store.get_model(job.other)
        odir = store.artifact_path(other)
        out = api.weight_tiles(
            store,
            other.id,
            lambda: artifact_source(odir),
            job.tensor,
            job.level,
            job.window,
            minus=(model.id, lambda: artifact_source(mdir)),
            kept_indices=api.artifact_kept_indices(odir).get(job.tensor),
        )
    rep.page(out.data)


def _activation_tiles(store: LineageStore, model: ModelRecord, job: TilesJob) -> Outcome:
    """Tiles of module `job.tensor`'s output for `job.instances` (the task is `model`'s), or of
    the difference other - model, aligned by the other's kept output channels."""
    from ..compare import api

    task, task_key = task_of(store, model, job.max_instances)
    module = job.tensor
    instances = list(job.instances or ())
    if job.other is None:
        return api.tensor_tiles(
            store, model.id, module, job.level, job.window, source="activation", task=task,
            task_key=task_key, instances=instances, device=job.device, model=_loader(store, model),
        )  # fmt: skip
    other = store.get_model(job.other)
    kept = api.artifact_kept_indices(store.artifact_path(other)).get(module + ".weight") or {}
    return api.tensor_tiles(
        store, other.id, module, job.level, job.window, source="activation", task=task,
        task_key=task_key, instances=instances, device=job.device, model=_loader(store, other),
        minus=(model.id, _loader(store, model)), kept_indices={0: kept[0]} if 0 in kept else None,
    )  # fmt: skip


def instances(job: InstancesJob, rep: Reporter) -> None:
    """One envelope: each instance as its task renders it (PNG bytes as uint8 tensors), and each
    model's prediction and target for it where stored."""
    import numpy as np

    from .. import wire
    from ..runner import load_evaluation

    store, first, rest = open_models(job.folder, job.models[0], job.models[1:])
    models = [first, *rest]
    ids = list(job.ids)
    task, _key = task_of(store, first, job.max_instances)
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
    meta: dict[str, Any] = {
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
