"""A scan of an experiment file's base model, stored in its workspace's lineage and reused: the
same scan of the same base (and task) is read back instead of measured again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..fingerprints import base_plan_fingerprint, evaluation_fingerprint, experiment_label, task_key
from ..store import LineageStore
from ..store.scans import get_scan, put_scan
from .measure import ScanResult
from .spec import ScanSpec, scan_fingerprint


def experiment_scan_fingerprint(exp: Any, store: LineageStore, spec: ScanSpec) -> str:
    base_fp = base_plan_fingerprint(exp, store.workspace)
    task = {
        "task": task_key(exp),
        "full": evaluation_fingerprint(exp, spec.max_instances) if spec.full else None,
    }
    from ..store.lineage import canonical_json

    return scan_fingerprint(base_fp, spec, canonical_json(task))


def scan_experiment(
    exp: Any,
    store: LineageStore,
    spec: ScanSpec,
    *,
    device: str = "auto",
    force: bool = False,
    allow_pickle: bool = False,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[ScanResult, bool]:
    """(the scan, whether it was read back from the store)."""
    fp = experiment_scan_fingerprint(exp, store, spec)
    if not force:
        hit = get_scan(store, fp)
        if hit is not None:
            return ScanResult.from_json(hit.result), True
    from ..device import resolve_device
    from ..fingerprints import base_spec_dict
    from ..load import load_base
    from ..ops.registry import CompressedModel
    from ..runner import import_user_ops
    from ..tasks import make_task
    from .measure import run_scan

    import_user_ops(exp)
    dev = resolve_device(device)
    say = progress or (lambda f, m: None)
    say(0.0, "loading the base model")
    base = CompressedModel(module=load_base(base_spec_dict(exp), exp.root, allow_pickle=allow_pickle))
    task = make_task(exp)
    full_task = make_task(exp, max_instances=spec.max_instances) if spec.full else None
    result = run_scan(
        base, spec, task=task, device=dev, full_task=full_task, progress=say, cancelled=cancelled
    )
    put_scan(
        store,
        fp,
        result.to_json(),
        base_fingerprint=base_plan_fingerprint(exp, store.workspace),
        experiment_file=experiment_label(exp.path, store.workspace),
    )
    return result, False
