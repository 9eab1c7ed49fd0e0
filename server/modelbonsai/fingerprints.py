"""Fingerprints: what makes a stored model up to date, computed without torch.

The runner plans with these (`runner.make_plan`), and the language server's stale marks
(lsp/drift.py) compute the same values from a parsed experiment file without loading any model:
this module imports neither torch nor the op implementations, so a first lineage reply does not
pay torch's import (seconds). `runner` and `load` re-export the names for their callers. A
fingerprint's value must never change across versions: a changed value makes every stored model
stale (tests/runner/test_fingerprint_values.py pins a few).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .store import canonical_json

if TYPE_CHECKING:
    from .ops.registry import OpDef

BASE = "base"


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """Accept a plain dict or a parsed BaseSpec-like object (attributes)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    keys = ("name", "load", "factory", "args", "dtype")
    return {k: getattr(spec, k) for k in keys if getattr(spec, k, None) is not None}


def base_fingerprint(spec: Mapping[str, Any] | Any, root: Path) -> str:
    """A hash of how the base is loaded and of its weight files (size + mtime, not content:
    hashing gigabytes on every run would make "is it up to date" slow)."""
    s = spec_to_dict(spec)
    h = hashlib.sha256(
        json.dumps(
            {k: s.get(k) for k in ("load", "factory", "args", "dtype")}, sort_keys=True, default=str
        ).encode()
    )
    for part in (s.get("load"), s.get("factory")):
        if not isinstance(part, str):
            continue
        p = _resolve_path_part(part, root)
        if p is None or not p.exists():
            continue
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            h.update(
                f"{f.relative_to(root) if f.is_relative_to(root) else f}:{st.st_size}:{st.st_mtime_ns}".encode()
            )
    return h.hexdigest()[:32]


def _looks_like_callable_ref(text: str, root: Path) -> bool:
    """ "module:function" or "file.py:function", as opposed to a path (including C:\\ paths)."""
    if re.match(r"^[A-Za-z]:[\\/]", text) or ":" not in text:
        return False
    target, _, fn = text.rpartition(":")
    return bool(target) and fn.isidentifier() and not (root / text).exists()


def _resolve_path_part(text: str, root: Path) -> Path | None:
    if _looks_like_callable_ref(text, root):
        target = text.rpartition(":")[0]
        return (root / target) if target.endswith(".py") else None
    return root / text


def _hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]


def experiment_label(path: Path, workspace: Path) -> str:
    """How the store names an experiment file: relative to the workspace when inside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def base_spec_dict(exp: Any) -> dict[str, Any]:
    b = exp.base
    spec: dict[str, Any] = {"name": b.name, "load": b.load}
    for key in ("factory", "args", "dtype"):
        value = getattr(b, key, None)
        if value is not None:
            spec[key] = value
    return spec


def base_plan_fingerprint(exp: Any, workspace: Path) -> str:
    """The base model's fingerprint: how it is loaded (and its weight files), and which file."""
    label = experiment_label(exp.path, workspace)
    return _hash({"base": base_fingerprint(base_spec_dict(exp), exp.root), "file": label})


def task_key(exp: Any) -> dict[str, Any] | None:
    """What of the task an op that needs it (calibration, fine-tuning) depends on."""
    if getattr(exp, "task", None) is None:
        return None
    return {"kind": exp.task.kind, "options": exp.task.options}


def evaluation_limit(exp: Any, max_instances: int | None = None) -> int | None:
    """How many instances a run evaluates, by the one rule the CLI, the language server and the
    extension share: the experiment file's own `max_instances` wins; `max_instances` (the CLI's
    --max-instances, the `bonsai.maxInstances` setting) applies only where the file sets none;
    None (every instance) without either, or without a task. A limit at or above the task's
    instance count evaluates every instance: `same_evaluation` treats the two alike."""
    if getattr(exp, "task", None) is None:
        return None
    own = getattr(exp.task, "max_instances", None)
    limit = own if own is not None else max_instances
    return None if limit is None else int(limit)


def evaluation_fingerprint(exp: Any, max_instances: int | None = None) -> str:
    """What a run asks of a model's metrics and outputs besides its weights: the task (kind and
    options) and its instance limit (`evaluation_limit`). Written ``<task hash>:<limit>``
    (``all``: no limit). What the runner stores is `evaluated_fingerprint` (the count it really
    evaluated); `same_evaluation` compares the two, for the runner's plan and for the language
    server's stale marks (lsp/drift.py) alike."""
    return _evaluation_fingerprint(exp, evaluation_limit(exp, max_instances))


def _evaluation_fingerprint(exp: Any, limit: int | None) -> str:
    """:func:`evaluation_fingerprint` for a limit already resolved (None: every instance)."""
    return f"{_hash({'task': task_key(exp)})}:{'all' if limit is None else int(limit)}"


def split_evaluation_fingerprint(fp: str) -> tuple[str, str]:
    """(task hash, limit) of an evaluation fingerprint; the limit is ``all`` or a count (asked
    for), or ``<evaluated>/<total>`` (stored; total ``?`` when unknown)."""
    task, _, limit = fp.partition(":")
    return task, limit


def evaluated_fingerprint(requested: str, evaluated: int, total: int | None) -> str:
    """What the runner stores after evaluating `evaluated` instances for the `requested`
    fingerprint: ``<task hash>:<evaluated>/<total>``, the counts rather than the limit, so
    "every instance" and "512 of a task with 200" are one evaluation. `total` is the task's
    instance count (`Task.total_instances`); when the task does not say, a run that evaluated
    fewer than its limit (or had none) has seen them all."""
    task, limit = split_evaluation_fingerprint(requested)
    if total is None and (limit == "all" or (limit.isdigit() and evaluated < int(limit))):
        total = evaluated
    return f"{task}:{int(evaluated)}/{'?' if total is None else int(total)}"


def _counts(limit: str) -> tuple[int, int | None] | None:
    """(evaluated, total or None) of a stored ``<evaluated>/<total>``; None for another form."""
    done, slash, total = limit.partition("/")
    if not slash or not done.isdigit() or not (total.isdigit() or total == "?"):
        return None
    return int(done), int(total) if total.isdigit() else None


def same_evaluation(stored: str | None, requested: str) -> bool:
    """Whether a model stored with evaluation fingerprint `stored` (None: not recorded) has the
    metrics a run asking for `requested` (`evaluation_fingerprint`) would give: same task, and
    the limit, capped at the task's instance count, is the count evaluated. A fingerprint stored
    before counts were recorded (``<task>:<limit>``) must match exactly."""
    if stored is None:
        return False
    old_task, old = split_evaluation_fingerprint(stored)
    new_task, new = split_evaluation_fingerprint(requested)
    if old_task != new_task:
        return False
    counts = _counts(old)
    if counts is None:
        return old == new
    evaluated, total = counts
    if new == "all":
        return total is not None and evaluated == total
    if not new.isdigit():
        return False
    want = int(new)
    # total unknown: only a limit equal to what was evaluated is surely the same evaluation
    return (min(want, total) if total is not None else want) == evaluated


def _instances(limit: str) -> str:
    """A stored or asked-for limit in words: ``all``, a count, or ``<evaluated>/<total>``."""
    counts = _counts(limit)
    if counts is not None:
        done, total = counts
        if done == total:
            return "every instance"
        limit = str(done)
    return "every instance" if limit == "all" else f"{limit} instance{'s' if limit != '1' else ''}"


def evaluation_change(stored: str | None, requested: str) -> str:
    """Why a model stored with evaluation fingerprint `stored` is re-evaluated by a run asking
    for `requested` (they are not `same_evaluation`): "evaluated on 512 instances, a run now
    evaluates every instance". The CLI's plan and the lineage's stale marks say the same."""
    if stored is None:
        return "evaluated with task settings this Bonsai did not record"
    old_task, old = split_evaluation_fingerprint(stored)
    new_task, new = split_evaluation_fingerprint(requested)
    if old_task != new_task or _instances(old) == _instances(new):
        return "evaluated with other task settings"
    return f"evaluated on {_instances(old)}, a run now evaluates {_instances(new)}"


def evaluation_counts(fp: str) -> tuple[int, int | None] | None:
    """(evaluated, total or None) of a stored evaluation fingerprint; None when it records a
    limit instead (stored before counts were)."""
    return _counts(split_evaluation_fingerprint(fp)[1])


def step_fingerprint(
    parent_fp: str,
    op: OpDef,
    params: dict[str, Any],
    seed: int,
    task: dict[str, Any] | None,
    origin_fp: str | None = None,
) -> str:
    """Same parent, op, resolved parameters and seed (and task, for ops that use it; and the
    variant's starting model `origin_fp`, for ops that read it besides their input: restore's
    source, distillation's teacher): same model.

    The origin is part of the key only where it differs from the parent (a variant's first op
    reads the model it starts from anyway), so every other fingerprint is what it always was."""
    key: dict[str, Any] = {"parent": parent_fp, "op": op.name, "params": params, "seed": seed}
    if op.needs_task:
        key["task"] = task
    if origin_fp is not None and origin_fp != parent_fp and op.reads_parent_for(params):
        key["origin"] = origin_fp
    return _hash(key)
