"""Lineage statuses the store does not record: failed variants and stale models.

*failed*: the latest run that covered a variant failed it (the run record keeps the message per
variant) and no model of that variant was stored since. It is shown as a synthetic ModelInfo. The
rule is the engine's (store/failures.py, which `bonsai ls` uses too); this index applies it
incrementally.

*stale*: a stored final model whose experiment file and variant still exist, but whose current
definition gives another fingerprint, and no model with the new fingerprint exists yet; or a
current model whose evaluation fingerprint (`runner.evaluation_fingerprint`: the task and how
many instances) does not match what a run from this server would ask for (the file's task and
its own instance limit, else the server's; a limit at or above the task's instance count being
"every instance"), or is unknown: a run re-evaluates it in place. The runner's own functions
(`evaluation_fingerprint`, `same_evaluation`) decide, so what is shown stale is what a run
re-evaluates.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, cast

from ..store import experiment_path
from ..store.failures import Outcome, latest_outcomes, still_failed
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
    from ..fingerprints import BASE, base_plan_fingerprint, step_fingerprint, task_key
    from ..ops.registry import OpError, get_op

    exp: Any = p.experiment
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
        origin_fp = parent_fp = fp = last[v.parent]
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
                fp = step_fingerprint(fp, opdef, params, seed, task, origin_fp)
        last[v.name] = fp
        finals[v.name] = Final(v.ops[-1].name, params, seed, exp.parent_name(v), fp, parent_fp)
    p.finals, p.base_fp, p.base_name = finals, base_fp, exp.base.name


REEVALUATE = "evaluated with other task settings: run to re-evaluate"
REEVALUATE_UNKNOWN = "evaluated with task settings this Bonsai did not record: run to re-evaluate"


def reevaluate_reason(stored: str | None, current: str) -> str:
    """Why a current model whose evaluation fingerprint is `stored` (None: not recorded) is
    stale when a run would evaluate with `current` (`runner.evaluation_fingerprint`; the caller
    checked `runner.same_evaluation`): the runner's words, as the CLI prints its plan."""
    from ..fingerprints import evaluation_change

    return f"{evaluation_change(stored, current)}: run to re-evaluate"


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
    eval_fingerprint: str | None  # None: stored before evaluations were recorded

    @classmethod
    def of(cls, r: tuple[Any, ...]) -> Stored:
        """From a row of MODELS_SQL."""
        return cls(
            str(r[0]),
            str(r[1]),
            None if r[2] is None else str(r[2]),
            r[3],
            str(r[4] or ""),
            float(r[5] or 0.0),
            int(r[6] or 0),
            r[7],
        )


MODELS_SQL = (
    "SELECT id, name, parent_id, experiment_file, fingerprint, created, seed, eval_fingerprint "
    "FROM models WHERE complete = 1"
)  # + " AND id IN (?, ...)": the models that changed
# The latest runs are enough to know each variant's most recent outcome.
RUNS_SQL = (
    "SELECT experiment_file, variants_json, started, finished, failures_json FROM "
    "(SELECT *, rowid AS r FROM runs ORDER BY started DESC, rowid DESC LIMIT 1000) ORDER BY started, r"
)
# Moves when a run starts, finishes (failures are written then) or is deleted: the runs are
# read again only then, not on each model a run stores.
RUNS_SIG_SQL = "SELECT count(*), max(rowid), total(finished), total(length(failures_json)) FROM runs"
_MAX_VARS = 500  # ids per `IN (...)` (SQLite allows 999 variables on old builds)

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
Part = tuple[ModelInfo, str]  # a model's ModelInfo and its serialized form (lineage.py)


class _File(NamedTuple):
    """An experiment file as the index judged its models."""

    parse: Parsed
    finals: dict[str, Final]  # the parse's finals then (a new base fingerprint makes new ones)
    evaluation: str | None  # the evaluation fingerprint a run would store (None: no parse)


@dataclass
class Statuses:
    stale: dict[str, str]  # model id -> why
    failed: list[ModelInfo]
    files: tuple[FileKey, ...]  # the experiment files read (the answer holds while these do)


class DriftIndex:
    """The statuses of one workspace folder, kept up to date model by model.

    Each `update` is given the lineage as it is now (id -> part, the parts of an unchanged model
    being the same objects as last time). Only what a change can affect is judged again: the
    changed models; models whose current fingerprint is a changed model's; children of a
    changed model (their reason names the parent); and, for failed variants, those of the
    changed model's name and those made from it. An edited experiment file or a moved base
    re-judges that file's models; runs are re-read only when the runs table moved. So a run
    that stores N models one by one costs O(N) judgements, not O(N²) (`judged` counts them:
    models judged and failed variants described).

    `limit` is the instance limit this server's runs use where a file sets none (None: every
    instance; `runner.evaluation_limit`): a current model evaluated otherwise is stale. It is the server's setting, fixed at initialize
    (the client restarts the server to change it), so an index judges for one limit only.
    """

    def __init__(self, workspace: Path, limit: int | None = None):
        self.workspace = workspace
        self.limit = limit
        self.judged = 0
        self._parts: dict[str, Part] = {}  # the lineage the index was last updated with
        self._models: dict[str, Stored] = {}
        self._by_name: dict[tuple[str | None, str], set[str]] = {}  # (file, model name) -> ids
        self._by_label: dict[str | None, set[str]] = {}
        self._children: dict[str, set[str]] = {}
        self._fps: dict[str, int] = {}  # fingerprint -> how many stored models have it
        self._awaits: dict[str, set[str]] = {}  # current fingerprint -> stale models awaiting it
        self._awaiting: dict[str, str] = {}  # model id -> the fingerprint it awaits
        self._stale: dict[str, str] = {}
        self._files: dict[str, _File] = {}  # label -> the file as judged
        self._runs_sig: tuple[Any, ...] | None = None
        self._latest: dict[tuple[str, str], Outcome] = {}
        self._failed: dict[tuple[str, str], ModelInfo] = {}

    def update(self, parts: dict[str, Part], query: Query) -> Statuses:
        """The statuses for `parts` (the store's complete models; `query` reads the store)."""
        old = self._parts
        changed = [mid for mid, part in parts.items() if old.get(mid) is not part]
        removed = [mid for mid in old if mid not in parts]
        self._parts = parts
        dirty: set[str] = set()
        failed_dirty: set[tuple[str, str]] = set()
        for mid in removed:
            self._drop(mid, dirty, failed_dirty)
        rows = {
            str(r[0]): Stored.of(r)
            for i in range(0, len(changed), _MAX_VARS)
            for r in query(
                f"{MODELS_SQL} AND id IN ({', '.join('?' * len(changed[i : i + _MAX_VARS]))})",
                changed[i : i + _MAX_VARS],
            )
        }
        for mid in changed:
            m, prev = rows.get(mid), self._models.get(mid)
            if m is not None and prev is not None and _same_place(m, prev):
                # re-evaluated (or re-read): only its own verdict can differ
                self._models[mid] = m
                dirty.add(mid)
                continue
            self._drop(mid, dirty, failed_dirty)
            if m is not None:  # gone since the lineage was read: the next update sees it removed
                self._add(m, dirty, failed_dirty)
        runs_sig = tuple(query(RUNS_SIG_SQL, ())[0])
        all_failed = runs_sig != self._runs_sig
        if all_failed:
            self._runs_sig, self._latest = runs_sig, latest_outcomes(query(RUNS_SQL, ()))
        labels = {label for label in self._by_label if label is not None} | {f for f, _ in self._latest}
        files: dict[str, Parsed] = {}
        for label in sorted(labels):
            p = files[label] = parsed(experiment_path(label, self.workspace), self.workspace)
            seen = self._files.get(label)
            if seen is None or seen.parse is not p or seen.finals is not p.finals:
                self._files[label] = _File(p, p.finals, self._evaluation(p))
                dirty |= self._by_label.get(label, set())
                all_failed = True
        for label in [label for label in self._files if label not in labels]:
            del self._files[label]
        for mid in dirty:
            self._judge(mid)
        self._describe_failed(None if all_failed else failed_dirty)
        return Statuses(dict(self._stale), list(self._failed.values()), tuple(p.key for p in files.values()))

    def _evaluation(self, p: Parsed) -> str | None:
        """What a run from this server would store as the evaluation fingerprint of `p`'s models:
        the runner's own function (the parse is shared by indexes of other limits: not kept on it)."""
        from ..fingerprints import evaluation_fingerprint

        return None if p.experiment is None else evaluation_fingerprint(p.experiment, self.limit)

    # -- the index ----------------------------------------------------------------------------
    def _add(self, m: Stored, dirty: set[str], failed_dirty: set[tuple[str, str]]) -> None:
        self._models[m.id] = m
        self._by_name.setdefault((m.experiment_file, m.name), set()).add(m.id)
        self._by_label.setdefault(m.experiment_file, set()).add(m.id)
        if m.parent_id is not None:
            self._children.setdefault(m.parent_id, set()).add(m.id)
        self._fps[m.fingerprint] = self._fps.get(m.fingerprint, 0) + 1
        self._touched(m, dirty, failed_dirty)

    def _drop(self, mid: str, dirty: set[str], failed_dirty: set[tuple[str, str]]) -> None:
        m = self._models.pop(mid, None)
        self._stale.pop(mid, None)
        self._await(mid, None)
        if m is None:
            return
        _discard(self._by_name, (m.experiment_file, m.name), mid)
        _discard(self._by_label, m.experiment_file, mid)
        if m.parent_id is not None:
            _discard(self._children, m.parent_id, mid)
        n = self._fps.get(m.fingerprint, 0) - 1
        if n > 0:
            self._fps[m.fingerprint] = n
        else:
            self._fps.pop(m.fingerprint, None)
        self._touched(m, dirty, failed_dirty)

    def _touched(self, m: Stored, dirty: set[str], failed_dirty: set[tuple[str, str]]) -> None:
        """`m` came or went: what may be judged otherwise now."""
        dirty.add(m.id)
        dirty |= self._awaits.get(m.fingerprint, set())
        dirty |= self._children.get(m.id, set())
        if m.experiment_file is None:
            return
        label = str(m.experiment_file)
        failed_dirty.add((label, m.name))
        seen = self._files.get(label)
        if seen is None:
            return
        if m.parent_id is None:  # the base: the fallback parent of any failed variant
            failed_dirty.update((label, v) for v in seen.finals)
        else:
            failed_dirty.update((label, v) for v, f in seen.finals.items() if f.parent == m.name)

    def _await(self, mid: str, fingerprint: str | None) -> None:
        was = self._awaiting.pop(mid, None)
        if was is not None:
            _discard(self._awaits, was, mid)
        if fingerprint is not None:
            self._awaiting[mid] = fingerprint
            self._awaits.setdefault(fingerprint, set()).add(mid)

    # -- judging ------------------------------------------------------------------------------
    def _judge(self, mid: str) -> None:
        from ..fingerprints import same_evaluation

        self._stale.pop(mid, None)
        self._await(mid, None)
        m = self._models.get(mid)
        part = self._parts.get(mid)
        if m is None or part is None:
            return
        self.judged += 1
        info = part[0]
        seen = self._files.get(m.experiment_file or "")
        if seen is None or "/" in m.name or info["status"] != "ok":
            return
        final = seen.parse.finals.get(m.name)
        if final is None or final.fingerprint is None:
            return
        if final.fingerprint == m.fingerprint:
            # The current model: are its metrics what a run would evaluate now?
            current = seen.evaluation
            if current is not None and not same_evaluation(m.eval_fingerprint, current):
                self._stale[mid] = reevaluate_reason(m.eval_fingerprint, current)
            return
        self._await(mid, final.fingerprint)  # a model with it stored makes this one no longer stale
        if final.fingerprint not in self._fps:
            self._stale[mid] = (
                f"the experiment file changed since this model was made ({_why(m, info, final, self._models)})"
            )

    def _describe_failed(self, keys: set[tuple[str, str]] | None) -> None:
        """Re-describe the failed variants of `keys` (None: all)."""
        if keys is None:
            self._failed = {}
        for key in self._latest if keys is None else sorted(keys):  # all: in the order of the runs
            info = self._failed_now(key)
            if info is None:
                self._failed.pop(key, None)
            else:
                self._failed[key] = info  # one still failed keeps its place in the lineage

    def _failed_now(self, key: tuple[str, str]) -> ModelInfo | None:
        """The failed entry of (file, variant), or None when its latest run did not fail it, it
        was stored since, or the file or the variant is gone."""
        outcome = self._latest.get(key)
        label, name = key
        message = still_failed(
            outcome, (self._models[i].created for i in self._by_name.get((label, name), ()))
        )
        if outcome is None or message is None:
            return None
        seen = self._files.get(label)
        p = None if seen is None else seen.parse
        if p is None or p.key[1] < 0 or (p.experiment is not None and name not in p.finals):
            return None
        self.judged += 1
        return self._failed_info(label, name, message, outcome.finished or outcome.started, p)

    def _failed_info(self, label: str, name: str, message: str, when: float, p: Parsed) -> ModelInfo:
        final = p.finals.get(name)
        parent: Stored | None = None
        if final is not None and final.parent is not None:
            named = [self._models[i] for i in self._by_name.get((label, final.parent), ())]
            parent = next((m for m in named if m.fingerprint == final.parent_fingerprint), None) or max(
                named, key=lambda m: m.created, default=None
            )
        if parent is None and (final is None or final.parent is not None):
            # unknown parent: the base of that experiment file (its newest)
            roots = (
                self._models[i] for i in self._by_label.get(label, ()) if self._models[i].parent_id is None
            )
            parent = max(roots, key=lambda m: m.created, default=None)
        info: ModelInfo = {
            "id": f"failed:{label}:{name}",
            "name": name,
            "parent": parent.id if parent is not None else None,
            "op": final.op if final is not None else None,
            "params": _plain(final.params) if final is not None else {},
            "status": "failed",
            "statusReason": message,
            "metrics": {},
            "created": datetime.fromtimestamp(when, tz=timezone.utc).isoformat(),
        }
        if name != p.base_name:
            info["experiment"] = {"file": str(experiment_path(label, self.workspace)), "variant": name}
        return info


def _same_place(a: Stored, b: Stored) -> bool:
    """The same model in the lineage, whatever its evaluation: nothing else is judged by it."""
    return (a.name, a.parent_id, a.experiment_file, a.fingerprint, a.created, a.seed) == (
        b.name,
        b.parent_id,
        b.experiment_file,
        b.fingerprint,
        b.created,
        b.seed,
    )


def _discard(index: dict[Any, set[str]], key: Any, mid: str) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(mid)
        if not ids:
            del index[key]


def _why(m: Stored, info: ModelInfo, final: Final, by_id: dict[str, Stored]) -> str:
    if info.get("op") != final.op:
        return f"op {info.get('op')} is now {final.op}"
    old, new = info.get("params") or {}, _plain(final.params)
    # a value the user edited first; a key only one side has (a default added since) last
    changed = sorted(
        (k for k in set(old) | set(new) if old.get(k) != new.get(k)),
        key=lambda k: (not (k in old and k in new), k),
    )
    if changed:
        k = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        return f"parameter {k}: {_show(old.get(k))} is now {_show(new.get(k))}{more}"
    if m.seed != final.seed:
        return f"seed: {m.seed} is now {final.seed}"
    if final.parent is None:
        return "the base's load spec or weight files changed"
    parent = by_id.get(m.parent_id) if m.parent_id is not None else None
    if (
        parent is not None
        and final.parent_fingerprint is not None
        and parent.fingerprint != final.parent_fingerprint
    ):
        return f"its parent '{final.parent}' changed"
    return "an earlier op of this variant changed"


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """As the stored params read back: JSON round-tripped (tuples as lists), non-finite as text."""
    from .lineage import _json_safe

    # a JSON object stays one through the round trip and _json_safe
    return cast("dict[str, Any]", _json_safe(json.loads(json.dumps(params, default=str)))) if params else {}


def _show(value: Any) -> str:
    return (
        "unset"
        if value is None
        else json.dumps(value)
        if isinstance(value, (str, list, dict))
        else str(value)
    )
