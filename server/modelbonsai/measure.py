"""Measure stored models' latency again, on demand (`bonsai measure`, `bonsai/model/measure`).

The models asked for are measured together with the base model each descends from, round by
round in turn (`metrics.measure_latencies`): a burst of load hits the base and the others alike,
so the ratio between them is fair even when the figures move. Each measurement joins its model's
history; the stored latency stays the most trustworthy of that history (store/measurements.py),
so measuring on a busy machine can only ever improve what is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .metrics import EfficiencyOptions, Latency, LatencyProtocol, latency_metrics
from .store import LineageStore, MetricRecord, ModelRecord, experiment_path

ProgressFn = Callable[[float, str], None]


class MeasureError(UserError, ValueError):
    """Something the user can fix: a broken model, or one whose experiment has no task."""


def on_demand_options() -> EfficiencyOptions:
    """More rounds than a run's measurement (which must stay a small share of the run): the user
    asked for this figure and waits for it."""
    return EfficiencyOptions(
        protocol=LatencyProtocol(min_rounds=5, max_rounds=15, round_s=0.02, budget_s=1.5)
    )


@dataclass
class Measured:
    model: ModelRecord
    latency: Latency  # this measurement
    shown: MetricRecord | None  # the stored latency afterwards (the best of the history)
    base: str = ""  # id of the base it was measured with (itself for a base)


@dataclass
class _Group:
    base: ModelRecord
    models: list[ModelRecord] = field(default_factory=list)  # the base first


def measure_models(
    store: LineageStore,
    names: list[str],
    *,
    device: str = "auto",
    options: EfficiencyOptions | None = None,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    allow_pickle: bool = False,
) -> list[Measured]:
    """Measure the latency of the named models (ids, id prefixes or names) and of their bases,
    interleaved per base; store each measurement. Returns one entry per measured model, the
    bases included, in measuring order."""
    from .device import resolve_device
    from .metrics import example_call, measure_latencies, one_thread, timer_for
    from .metrics.efficiency import ThreadCpuTimer

    say = progress or (lambda f, m: None)
    o = options or on_demand_options()
    dev = resolve_device(device)
    groups: dict[str, _Group] = {}
    for name in names:
        rec = store.get_model(name)
        if rec.status != "ok":
            raise MeasureError(f"model '{rec.name}' is broken: {rec.status_reason}")
        root = store.root_of(rec)
        group = groups.setdefault(root.id, _Group(root, [root]))
        if all(m.id != rec.id for m in group.models):
            group.models.append(rec)
    out: list[Measured] = []
    total = sum(len(g.models) for g in groups.values())
    done = 0
    for group in groups.values():
        say(done / max(1, total), f"loading {', '.join(m.name for m in group.models)}")
        task, modules = _load_group(store, group, allow_pickle)
        calls, sizes = [], []
        for module in modules:
            module.to(dev).eval()
            call, n = example_call(module, task, dev, o.batch_size)
            calls.append(call)
            sizes.append(n)
        say(done / max(1, total), f"measuring {len(calls)} models in turn")
        timer = o.timer or timer_for(dev)
        with one_thread(isinstance(timer, ThreadCpuTimer)):
            lats = measure_latencies(
                calls, batch_sizes=sizes, device=dev, protocol=o.protocol, timer=timer, cancelled=cancelled
            )
        for rec, module, lat in zip(group.models, modules, lats, strict=True):
            store.put_metrics(rec.id, latency_metrics(lat))
            shown = next((m for m in store.metrics(rec.id) if m.name == "latency"), None)
            out.append(Measured(rec, lat, shown, group.base.id))
            module.to("cpu")
        done += len(group.models)
        say(done / max(1, total), f"measured {', '.join(m.name for m in group.models)}")
    return out


def _load_group(store: LineageStore, group: _Group, allow_pickle: bool) -> tuple[Any, list[torch.nn.Module]]:
    """The task of the group's experiment file (its example batch is what is timed) and each
    model's runnable module."""
    from .artifacts import load_artifact
    from .experiment import load_experiment
    from .load import load_base, load_skeleton
    from .tasks import make_task

    base = group.base
    if not base.experiment_file or base.base_spec is None:
        raise MeasureError(
            f"model '{base.name}' records no experiment file: its latency is measured on the "
            "task's example batch"
        )
    file = experiment_path(base.experiment_file, store.workspace)
    if not file.is_file():
        raise MeasureError(f"{file} (the experiment file of '{base.name}') does not exist")
    parsed = load_experiment(file)
    exp = parsed.experiment or parsed.partial
    task = make_task(exp) if exp is not None else None
    if task is None:
        raise MeasureError(
            f"{file.name} has no `task:` section: the latency is measured on the task's example batch"
        )
    root: Path = file.parent
    spec = base.base_spec
    modules = []
    for rec in group.models:
        if rec.parent_id is None:
            modules.append(load_base(spec, root, allow_pickle=allow_pickle))
        else:
            modules.append(load_artifact(store.artifact_path(rec), lambda: load_skeleton(spec, root)).module)
    return task, modules
