"""A self-contained HTML report of a lineage (`bonsai report --html`): one file, no network, no
server, its data embedded. For people who review a compression study without running it.

It holds the Model Map's scatterplot (any two metrics, the Pareto front marked) and its table with
filters, each model's recipe (the chain of ops from its base) and metrics, and for the pairs the
user names (`--compare BASE OTHER...`) the Behaviors summary (agreement and accuracy change with
their intervals, McNemar's test, per-class changes, top transitions) and the Layers depth profile
(each module's relative weight error, in depth order).

The page's script and styles are in `report_template.html` beside this module, filled with the
data as JSON. Its Content-Security-Policy allows nothing but its own inline script (by nonce) and
styles, so opening it loads nothing from anywhere.
"""

from __future__ import annotations

import datetime
import html
import json
import secrets
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..store import LineageStore
from ..store.records import MetricRecord, ModelRecord

#: transitions and per-class rows kept per comparison (the page is for reading, not for mining)
TOP_TRANSITIONS = 12
TOP_GROUPS = 40


class ReportError(UserError):
    """A report that cannot be written as asked (an empty lineage, a model that cannot be compared)."""


def report_data(
    store: LineageStore,
    *,
    compare: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data."""
    models = store.list_models()
    if not models:
        raise ReportError(f"no models in {store.root} yet: run an experiment first (`bonsai run FILE`)")
    all_metrics = store.all_metrics()
    keys = _metric_keys([x for m in models for x in all_metrics.get(m.id, [])])
    by_id = {m.id: m for m in models}
    rows = [_model_row(m, by_id, all_metrics.get(m.id, []), keys) for m in models]
    metrics = [
        {"key": key, "name": d[0], "unit": d[1], "higherIsBetter": d[2], "headline": d[3]}
        for d, key in keys.items()
    ]
    data: dict[str, Any] = {
        "title": f"Bonsai report: {store.workspace.name}",
        "workspace": store.workspace.name,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "metrics": metrics,
        "models": rows,
        "defaults": default_axes(metrics, rows),
        "comparisons": [],
    }
    if compare:
        base, others = compare[0], list(compare[1:])
        if not others:
            raise ReportError("--compare needs a base model and at least one other: --compare BASE OTHER...")
        for other in others:
            if progress is not None:
                progress(f"comparing {other} with {base}")
            data["comparisons"].append(comparison(store, base, other))
    return data


def _metric_keys(metrics: list[MetricRecord]) -> dict[tuple[str, str, bool, bool], str]:
    """One key per metric definition (name, unit, direction, headline), the name where it is
    unique: two tasks' "accuracy" in different units stay two columns."""
    keys: dict[tuple[str, str, bool, bool], str] = {}
    used: set[str] = set()
    for x in metrics:
        d = (x.name, x.unit or "", bool(x.higher_is_better), bool(x.headline))
        if d in keys:
            continue
        key, n = x.name, 1
        while key in used:
            n += 1
            key = f"{x.name}#{n}"
        keys[d] = key
        used.add(key)
    return keys


def _model_row(
    m: ModelRecord,
    by_id: dict[str, ModelRecord],
    metrics: list[MetricRecord],
    keys: dict[tuple[str, str, bool, bool], str],
) -> dict[str, Any]:
    chain: list[dict[str, Any]] = []
    cur: ModelRecord | None = m
    while cur is not None and cur.parent_id is not None:
        chain.append({"model": cur.name, "op": cur.op, "params": cur.params})
        cur = by_id.get(cur.parent_id)
    chain.reverse()
    values: dict[str, float] = {}
    for x in metrics:
        if x.value == x.value and abs(x.value) != float("inf"):
            values[keys[(x.name, x.unit or "", bool(x.higher_is_better), bool(x.headline))]] = float(x.value)
    parent = by_id.get(m.parent_id) if m.parent_id else None
    return {
        "id": m.id,
        "name": m.name,
        "aliases": [a for a in m.aliases if "/" not in a],
        "parent": parent.name if parent else None,
        "root": cur.name if cur is not None else m.name,
        "op": m.op,
        "params": m.params,
        "recipe": chain,
        "seed": m.seed,
        "status": m.status,
        "statusReason": m.status_reason,
        "imported": m.imported.get("tool") if m.imported else None,
        "experiment": m.experiment_file,
        "variant": m.variant,
        "metrics": values,
    }


def default_axes(metrics: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, str | None]:
    """The Model Map's defaults: stored size (else a size-like metric) across, the headline quality
    metric up; never the same metric twice."""

    def present(key: str) -> bool:
        return sum(key in r["metrics"] for r in rows) >= 2

    usable = [m for m in metrics if present(m["key"])]
    sizes = [m for m in usable if m["unit"] == "B" or "size" in m["name"].lower()]
    x = next((m for m in sizes if m["name"] == "stored_size"), sizes[0] if sizes else None)
    quality = [m for m in usable if m["headline"] and m["higherIsBetter"] and m is not x]
    y = quality[0] if quality else next((m for m in usable if m is not x), None)
    if x is None:
        x = next((m for m in usable if m is not y), None)
    return {"x": x["key"] if x else None, "y": y["key"] if y else None}


def comparison(store: LineageStore, base_name: str, other_name: str) -> dict[str, Any]:
    """The Behaviors summary and the Layers depth profile of one pair."""
    base, other = store.get_model(base_name), store.get_model(other_name)
    for m in (base, other):
        if m.imported:
            raise ReportError(
                f"--compare {m.name}: imported from {m.imported.get('tool')}, it has no weights or outputs to compare"
            )
        if m.status != "ok":
            raise ReportError(f"--compare {m.name}: the model is broken ({m.status_reason})")
    return {
        "base": base.name,
        "other": other.name,
        "behavior": _behavior(store, base, other),
        "layers": _layers(store, base, other),
    }


def _behavior(store: LineageStore, base: ModelRecord, other: ModelRecord) -> dict[str, Any] | None:
    outputs = "outputs.safetensors"  # runner.OUTPUTS_FILE (not imported: it imports torch at once)
    if not all((store.artifact_path(m) / outputs).is_file() for m in (base, other)):
        return None  # no task: nothing was evaluated
    from ..compare.behavior import compare_behavior
    from ..runner import load_evaluation

    b, o = load_evaluation(store, base), load_evaluation(store, other)
    if b is None or o is None:
        return None
    res = compare_behavior(b, {other.name: o}, base_id=base.name)[other.name]
    groups = sorted(
        res.groups,
        key=lambda g: abs((g.get("accuracy_delta") or {}).get("value") or 0.0),
        reverse=True,
    )[:TOP_GROUPS]
    changed = [t for t in res.transitions if t["base"] != t["other"]][:TOP_TRANSITIONS]
    return {
        "kind": res.task_kind,
        "summary": _json_safe(res.summary),
        "groups": _json_safe(groups),
        "transitions": [{k: t[k] for k in ("base", "other", "count")} for t in changed],
    }


def _layers(store: LineageStore, base: ModelRecord, other: ModelRecord) -> list[dict[str, Any]]:
    from ..compare.sources import artifact_source
    from ..compare.stored import artifact_kept_indices
    from ..compare.weights import compare_weights

    result = compare_weights(
        artifact_source(store.artifact_path(base)),
        {other.name: artifact_source(store.artifact_path(other))},
        base_id=base.name,
        kept_indices={other.name: artifact_kept_indices(store.artifact_path(other))},
    )[other.name]
    out: list[dict[str, Any]] = []
    for node in result.tree:
        j = node.to_json()
        own = [t for t in result.tensors if t.name.rsplit(".", 1)[0] == node.path and t.stats is not None]
        if not own:
            continue  # a container: its children are the profile's points
        metrics = j.get("metrics", {})
        out.append(
            {
                "path": node.path,
                "relL2": _num(metrics.get("rel_l2")),
                "sqnrDb": _num(metrics.get("sqnr_db")),
                "params": node.params,
            }
        )
    return out


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return _num(v) if isinstance(v, float) else v
    try:
        return _num(float(v))  # numpy scalars
    except (TypeError, ValueError):
        return str(v)


def render_html(data: dict[str, Any]) -> str:
    """The page: the template with the data embedded (script-safe JSON) and a fresh nonce."""
    template = resources.files(__package__).joinpath("report_template.html").read_text(encoding="utf-8")
    payload = (
        json.dumps(data, separators=(",", ":"), allow_nan=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return (
        template.replace("__NONCE__", secrets.token_urlsafe(16))
        .replace("__TITLE__", html.escape(str(data["title"])))
        .replace("__DATA__", payload)
    )


def write_report(
    store: LineageStore,
    output: Path,
    *,
    compare: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> Path:
    text = render_html(report_data(store, compare=compare, progress=progress))
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output} is a folder: give the report's file name (-o report.html)")
    if not output.parent.is_dir():
        raise ReportError(f"{output.parent}: no such folder")
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    return output
