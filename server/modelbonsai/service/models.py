"""The stored models a job works on: opening them, rebuilding them, and their experiment's task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..store import LineageStore, ModelRecord, StoreError, experiment_path

if TYPE_CHECKING:
    from torch import nn

    from ..experiment.model import Experiment
    from ..ops.registry import CompressedModel
    from ..tasks.base import Task


class WorkError(UserError, ValueError):
    """Something the user can fix; the message says what (a run whose variants failed, a
    comparison that needs a task the model's experiment does not have)."""


def problems_text(file: Path, problems: Sequence[Any]) -> str:
    """An experiment file's first problems in one line (a run refused because of them)."""
    shown = "; ".join(f"{p.range}: {p.message}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{file.name} has {len(problems)} problem(s), fix them before running: {shown}{more}"


def skeleton_factory(store: LineageStore, rec: ModelRecord) -> Callable[[], nn.Module]:
    """A function building the base architecture of `rec` (what its artifact is rebuilt on)."""
    from ..load import load_skeleton

    if rec.imported:  # bonsai import-cc: its recipe and metrics, no weights to rebuild it from
        from ..artifacts.manifest import NoWeightsError

        raise NoWeightsError(store.artifact_path(rec), rec.imported)
    root = store.root_of(rec)
    if root.base_spec is None:
        raise StoreError(f"model '{rec.name}' descends from '{root.name}', which records no base spec")
    exp_root = store.workspace
    if root.experiment_file:
        exp_root = experiment_path(root.experiment_file, store.workspace).parent
    spec = root.base_spec
    return lambda: load_skeleton(spec, exp_root)


def load_compressed(store: LineageStore, rec: ModelRecord) -> CompressedModel:
    """A stored model rebuilt from its artifact, with its encodings (what an export needs)."""
    from ..artifacts import load_artifact

    return load_artifact(store.artifact_path(rec), skeleton_factory(store, rec))


def load_module(store: LineageStore, rec: ModelRecord) -> nn.Module:
    """A stored model rebuilt from its artifact, as a runnable module."""
    return load_compressed(store, rec).module


def experiment_of(store: LineageStore, rec: ModelRecord) -> Experiment | None:
    """The parsed experiment file a model came from (for its task), or None."""
    from ..experiment import load_experiment

    root = store.root_of(rec)
    label = rec.experiment_file or root.experiment_file
    if not label:
        return None
    parsed = load_experiment(experiment_path(label, store.workspace))
    return parsed.experiment or parsed.partial


def task_of(store: LineageStore, rec: ModelRecord, max_instances: int | None) -> tuple[Task, dict[str, Any]]:
    """(task instance, task key) for a model's experiment; WorkError when it has no task. The
    key identifies the task and its data in the result cache."""
    from ..runner import evaluation_limit
    from ..tasks import make_task

    exp = experiment_of(store, rec)
    has_task = exp is not None and exp.task is not None
    limit = evaluation_limit(exp, max_instances) if has_task else None  # as a run would evaluate
    task = make_task(exp, max_instances=limit) if has_task else None
    if exp is None or exp.task is None or task is None:
        raise WorkError(
            f"model '{rec.name}' comes from no experiment file with a `task:` section; "
            "this comparison needs the task's data"
        )
    return task, {"kind": exp.task.kind, "options": exp.task.options, "max_instances": limit}


def open_models(
    folder: str, base: str, others: Sequence[str]
) -> tuple[LineageStore, ModelRecord, list[ModelRecord]]:
    """The store of `folder`, the base model and the others (ids, prefixes or names)."""
    store = LineageStore.open(folder)
    return store, store.get_model(base), [store.get_model(m) for m in others]
