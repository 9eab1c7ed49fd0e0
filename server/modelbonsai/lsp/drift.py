"""Lineage statuses the store does not record: failed variants and stale models.

*failed*: the latest run that covered a variant failed it (the run record keeps the message per
variant) and no model of that variant was stored since. It is shown as a synthetic ModelInfo.

*stale*: a stored final model whose experiment file and variant still exist, but whose current
definition gives another fingerprint, and no model with the new fingerprint exists yet; or a
current model whose metrics were evaluated with other task settings than the file's now (its
evaluation fingerprint's task part differs, or is unknown): a run re-evaluates it in place. The
instance limit part is not judged: a run may be given another limit than the file's (the CLI's
--max-instances, the server's setting), which the lineage cannot know.

The current fingerprints are computed the way `runner.make_plan` does, but without running
`make_plan`: it imports the experiment's `ops_from` files (user code, which an untrusted
workspace must never run in the server). A step using an op that is not built in has no
computable fingerprint, so it (and what derives from it) is never called stale. Parses are
cached per file by mtime and size, so a lineage request that finds nothing edited costs stats.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..store import experiment_path
from .protocol import ModelInfo

log = logging.getLogger(__name__)

FileKey = tuple[Path, int, int]  # path, mtime_ns, size (-1, -1: missing)


def file_key(path: Path) -> FileKey:
    try:
        st = path.stat()
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


@dataclass
class Final:
    """What the current experiment file says a final model (a variant's, or the base) is."""

    op: str | None
    params: dict[str, Any]
    seed: int
    parent: str | None  # the parent's model name (None for the base)
    fingerprint: str | None  # None: not computable without user code
    parent_fingerprint: str | None = None


@dataclass
class Parsed:
    """One experiment file as parsed (None: it does not parse) and its finals by model name."""

    key: FileKey
    experiment: Any | None
    base_name: str = ""
    finals: dict[str, Final] = field(default_factory=dict)
    base_fp: str | None = None  # the base fingerprint the finals were computed with
    eval_task: str | None = None  # the task part of the file's evaluation fingerprint


_cache: dict[tuple[Path, Path], Parsed] = {}
_cache_lock = threading.Lock()


def parsed(file: Path, workspace: Path) -> Parsed:
    """The file's parse and current fingerprints, reusing the parse while mtime and size hold."""
    key = file_key(file)
    with _cache_lock:
        hit = _cache.get((file, workspace))
    if hit is None or hit.key != key:
        hit = Parsed(key, _load(file) if key[1] >= 0 else None)
        with _cache_lock:
            _cache[(file, workspace)] = hit
    if hit.experiment is not None:
        _fingerprints(hit, workspace)
    return hit


def _load(file: Path) -> Any | None:
    from ..experiment import load_experiment

    try:
        return load_experiment(file).experiment
    except Exception:  # a parser bug must not break the lineage
        log.exception("parsing %s for the lineage failed", file)
        return None


def _fingerprints(p: Parsed, workspace: Path) -> None:
    """Fill `p.finals` as `make_plan` would plan them (built-in ops only, no imports of user code).
    The base fingerprint (weight files' sizes and times) is recomputed each time: stats only."""
    from ..ops.registry import OpError, get_op
    from ..runner import BASE, base_plan_fingerprint, evaluation_fingerprint, step_fingerprint, task_key

    exp: Any = p.experiment
    if p.eval_task is None:
        p.eval_task = eval_task_part(evaluation_fingerprint(exp))
    try:
        base_fp: str | None = base_plan_fingerprint(exp, workspace)
    except Exception:  # an odd load spec: say nothing rather than something wrong
        base_fp = None
    if p.finals and base_fp == p.base_fp:
        return
    finals: dict[str, Final] = {exp.base.name: Final(None, {}, int(exp.seed), None, base_fp)}
    last: dict[str, str | None] = {BASE: base_fp, exp.base.name: base_fp}
    task = task_key(exp)
    for v in exp.variants:
        if v.parent not in last or not v.ops:
            continue  # make_plan refuses this file: nothing is stale by it
        parent_fp = fp = last[v.parent]
        seed = int(v.seed if getattr(v, "seed", None) is not None else exp.seed)
        params: dict[str, Any] = {}
        for call in v.ops:
            opdef = get_op(call.name)
            params = dict(call.params)
            # Only built-in ops: a user op's defaults live in code we must not run.
            if opdef is None or not opdef.fn.__module__.startswith("modelbonsai."):
                fp = None
                continue
            try:
                params = opdef.resolve(dict(call.params))
            except OpError:
                fp = None
                continue
            if fp is not None:
                fp = step_fingerprint(fp, opdef, params, seed, task)
        last[v.name] = fp
        finals[v.name] = Final(v.ops[-1].name, params, seed, exp.parent_name(v), fp, parent_fp)
    p.finals, p.base_fp, p.base_name = finals, base_fp, exp.base.name


def eval_task_part(eval_fingerprint: str | None) -> str | None:
    """The task part of a `runner.evaluation_fingerprint` (``<task hash>:<limit>``)."""
    return None if eval_fingerprint is None else eval_fingerprint.split(":", 1)[0]


REEVALUATE = "evaluated with other task settings: run to re-evaluate"
REEVALUATE_UNKNOWN = "evaluated with task settings this Bonsai did not record: run to re-evaluate"


@dataclass
class Stored:
    """The columns of a complete stored model that the statuses need."""

    id: str
    name: str
    parent_id: str | None
    experiment_file: str | None
    fingerprint: str
    created: float
    seed: int
    eval_fingerprint: str | None = None
    eval_known: bool = False  # the row carried the column (False: not judged)


LABELS_SQL = "SELECT DISTINCT experiment_file FROM models WHERE complete = 1 AND experiment_file IS NOT NULL"
# + " AND experiment_file IN (?, ...)": only the models of files that exist are looked at (a
# fingerprint covers its file's name, so a model with the new one is of the same file).
MODELS_SQL = ("SELECT id, name, parent_id, experiment_file, fingerprint, created, seed, eval_fingerprint "
              "FROM models WHERE complete = 1")
# The latest runs are enough to know each variant's most recent outcome.
RUNS_SQL = ("SELECT experiment_file, variants_json, started, finished, failures_json FROM "
            "(SELECT *, rowid AS r FROM runs ORDER BY started DESC, rowid DESC LIMIT 1000) ORDER BY started, r")


@dataclass
class Statuses:
    stale: dict[str, str]  # model id -> why
    failed: list[ModelInfo]
    files: tuple[FileKey, ...]  # the experiment files read (the answer holds while these do)


def statuses(workspace: Path, stored_labels: Iterable[str], runs: list[tuple[Any, ...]],
             infos: dict[str, ModelInfo], rows_of: Callable[[list[str]], list[tuple[Any, ...]]]) -> Statuses:
    """Stale models and failed variants, from the experiment files the store's models name
    (`stored_labels`, LABELS_SQL), its runs (`runs`, RUNS_SQL), the ModelInfo already made for
    each model (`infos`) and `rows_of(labels)`: the complete models of those files (MODELS_SQL)."""
    labels = {str(label) for label in stored_labels}
    latest: dict[tuple[str, str], tuple[float, float | None, str | None]] = {}
    for file, variants_json, started, finished, failures_json in runs:
        failures = _loads(failures_json, {})
        names = [*_loads(variants_json, []), *failures]
        for name in names:
            latest[(str(file), str(name))] = (float(started), finished, failures.get(name))
        labels.add(str(file))
    files = {label: parsed(experiment_path(label, workspace), workspace) for label in sorted(labels)}
    existing = [label for label, p in files.items() if p.key[1] >= 0]
    rows = rows_of(existing) if existing else []
    models = [Stored(str(r[0]), str(r[1]), r[2], r[3], str(r[4] or ""), float(r[5] or 0.0), int(r[6] or 0),
                     r[7] if len(r) > 7 else None, len(r) > 7)
              for r in rows]
    fingerprints = {m.fingerprint for m in models}
    by_id = {m.id: m for m in models}  # a changed base makes every model stale: no scan per model
    stale: dict[str, str] = {}
    for m in models:
        info = infos.get(m.id)
        p = files.get(m.experiment_file or "")
        if info is None or p is None or "/" in m.name or info["status"] != "ok":
            continue
        final = p.finals.get(m.name)
        if final is None or final.fingerprint is None:
            continue
        if final.fingerprint == m.fingerprint:
            # The current model: are its metrics of the file's task settings?
            if m.eval_known and p.eval_task is not None and eval_task_part(m.eval_fingerprint) != p.eval_task:
                stale[m.id] = REEVALUATE_UNKNOWN if m.eval_fingerprint is None else REEVALUATE
            continue
        if final.fingerprint not in fingerprints:
            stale[m.id] = f"the experiment file changed since this model was made ({_why(m, info, final, by_id)})"
    failed: list[ModelInfo] = []
    newest: dict[tuple[str | None, str], float] = {}  # (file, model name) -> when last stored
    for m in models:
        newest[(m.experiment_file, m.name)] = max(m.created, newest.get((m.experiment_file, m.name), m.created))
    for (label, name), (started, finished, message) in latest.items():
        if message is None:
            continue
        p = files[label]
        if p.key[1] < 0 or (p.experiment is not None and name not in p.finals):
            continue  # the file or the variant is gone
        if newest.get((label, name), float("-inf")) >= started:
            continue  # stored since that run failed it
        failed.append(_failed_info(workspace, label, name, message, finished or started, p, models))
    return Statuses(stale, failed, tuple(p.key for p in files.values()))


def _why(m: Stored, info: ModelInfo, final: Final, by_id: dict[str, Stored]) -> str:
    if info.get("op") != final.op:
        return f"op {info.get('op')} is now {final.op}"
    old, new = info.get("params") or {}, _plain(final.params)
    # a value the user edited first; a key only one side has (a default added since) last
    changed = sorted((k for k in set(old) | set(new) if old.get(k) != new.get(k)),
                     key=lambda k: (not (k in old and k in new), k))
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"parameter {k}: {_show(old.get(k))} is now {_show(new.get(k))}{more}"
    if m.seed != final.seed:
        return f"seed: {m.seed} is now {final.seed}"
    if final.parent is None:
        return "the base's load spec or weight files changed"
    parent = by_id.get(m.parent_id) if m.parent_id is not None else None
    if parent is not None and final.parent_fingerprint is not None and parent.fingerprint != final.parent_fingerprint:
        return f"its parent '{final.parent}' changed"
    return "an earlier op of this variant changed"


def _failed_info(workspace: Path, label: str, name: str, message: str, when: float, p: Parsed,
                 models: list[Stored]) -> ModelInfo:
    final = p.finals.get(name)
    same_file = [m for m in models if m.experiment_file == label]
    parent: Stored | None = None
    if final is not None and final.parent is not None:
        named = [m for m in same_file if m.name == final.parent]
        parent = next((m for m in named if m.fingerprint == final.parent_fingerprint), None) \
            or max(named, key=lambda m: m.created, default=None)
    if parent is None and (final is None or final.parent is not None):
        # unknown parent: the base of that experiment file (its newest)
        parent = max((m for m in same_file if m.parent_id is None), key=lambda m: m.created, default=None)
    info: ModelInfo = {
        "id": f"failed:{label}:{name}",
        "name": name,
        "parent": parent.id if parent is not None else None,
        "op": final.op if final is not None else None,
        "params": _plain(final.params) if final is not None else {},
        "status": "failed",
        "statusReason": message,
        "metrics": [],
        "created": datetime.fromtimestamp(when, tz=timezone.utc).isoformat(),
    }
    if name != p.base_name:
        info["experiment"] = {"file": str(experiment_path(label, workspace)), "variant": name}
    return info


def _loads(text: Any, default: Any) -> Any:
    try:
        value = json.loads(text or "")
    except (TypeError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """As the stored params read back: JSON round-tripped (tuples as lists), non-finite as text."""
    from .lineage import _json_safe

    return _json_safe(json.loads(json.dumps(params, default=str))) if params else {}  # type: ignore[return-value]


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)
