"""Failed variants: the rule that says a variant is failed, from the store's run records.

A variant is *failed* while the latest run that covered it failed it (the run record keeps the
message per variant) and no model of that variant's name, from that experiment file, was stored
since that run started; and the experiment file still exists and, when it parses, still declares
the variant. It stays listed until a run makes it (or the file drops it), so a failure is not seen
only in the output of the run that met it.

The language server's lineage shows these (lsp/drift.py, which keeps an incremental index over
the same rule: `latest_outcomes` and `still_failed` are its building blocks), and `bonsai ls`
lists them (`failed_variants`, a whole pass over the store).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .records import experiment_path

if TYPE_CHECKING:
    from .lineage import LineageStore

#: how many of the latest runs are read: enough to know each variant's most recent outcome
RUNS_READ = 1000


class Outcome(NamedTuple):
    """How the latest run that covered a variant ended for it."""

    started: float
    finished: float | None
    message: str | None  # the failure; None: that run made (or found) the variant


def latest_outcomes(runs: Iterable[tuple[Any, Any, Any, Any, Any]]) -> dict[tuple[str, str], Outcome]:
    """(experiment file label, variant) -> the outcome of the latest run that covered it.

    `runs` are (experiment_file, variants, started, finished, failures), oldest first; variants
    and failures as stored (JSON text) or already decoded (a list, a dict)."""
    latest: dict[tuple[str, str], Outcome] = {}
    for file, variants, started, finished, failures in runs:
        failed = _decoded(failures, {})
        for name in [*_decoded(variants, []), *failed]:
            latest[(str(file), str(name))] = Outcome(float(started), finished, failed.get(name))
    return latest


def still_failed(outcome: Outcome | None, stored: Iterable[float]) -> str | None:
    """The failure message while it stands: the outcome is a failure and none of the variant's
    models (`stored`: their creation times) was stored since that run started; else None."""
    if outcome is None or outcome.message is None:
        return None
    if any(created >= outcome.started for created in stored):
        return None
    return outcome.message


@dataclass(frozen=True)
class FailedVariant:
    experiment_file: str  # the label runs and models record (relative to the workspace when inside)
    variant: str
    message: str
    started: float
    finished: float | None
    parent: str | None = (
        None  # the model name it derives from, per the file (None: unknown or the base itself)
    )
    op: str | None = None  # its last op, per the file


def failed_variants(store: LineageStore) -> list[FailedVariant]:
    """Every failed variant of the store, in the order of the runs that failed them."""
    runs = [
        (r.experiment_file, r.variants, r.started, r.finished, r.failures)
        for r in reversed(store.list_runs(limit=RUNS_READ))
    ]
    outcomes = latest_outcomes(runs)
    created: dict[tuple[str | None, str], list[float]] = {}
    for m in store.list_models():
        created.setdefault((m.experiment_file, m.name), []).append(m.created)
    files: dict[str, _Declared | None] = {}
    out: list[FailedVariant] = []
    for (label, name), outcome in outcomes.items():
        message = still_failed(outcome, created.get((label, name), ()))
        if message is None:
            continue
        if label not in files:
            files[label] = _declared(experiment_path(label, store.workspace))
        declared = files[label]
        if declared is None or (declared.complete and name not in declared.variants):
            continue  # the file is gone, or it no longer declares this variant
        parent, op = declared.variants.get(name, (None, None))
        out.append(FailedVariant(label, name, message, outcome.started, outcome.finished, parent, op))
    return out


@dataclass(frozen=True)
class _Declared:
    """What an experiment file declares now: variant (and base) name -> (parent name, last op).
    `complete`: the file parses without errors, so a name it lacks is really gone (with errors,
    the partial parse still names parents and ops, but a failure is never hidden by it)."""

    variants: dict[str, tuple[str | None, str | None]]
    complete: bool


def _declared(file: Path) -> _Declared | None:
    """None when the file is gone."""
    if not file.is_file():
        return None
    from ..experiment import load_experiment  # only when a failure stands: `ls` needs no parser otherwise

    try:
        parsed = load_experiment(file)
    except Exception:  # a parser bug must not hide the lineage
        return _Declared({}, False)
    exp = parsed.experiment or parsed.partial
    if exp is None:
        return _Declared({}, False)
    variants: dict[str, tuple[str | None, str | None]] = {exp.base.name: (None, None)}
    for v in exp.variants:
        variants[v.name] = (exp.parent_name(v), v.ops[-1].name if v.ops else None)
    return _Declared(variants, parsed.experiment is not None)


def _decoded(value: Any, default: Any) -> Any:
    if isinstance(value, type(default)):
        return value
    try:
        decoded = json.loads(value or "")
    except (TypeError, ValueError):
        return default
    return decoded if isinstance(decoded, type(default)) else default
