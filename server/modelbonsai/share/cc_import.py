"""Import a Compress and Compare lineage (its `models.json`) into a Bonsai store.

Compress and Compare (IEEE VIS 2024) describes a set of models in one JSON file: `operations`
(each with a `name` and declared `parameters`), `metrics` (`name`, `primary`, `unit`, `min`, `max`,
`format`) and `models` (`id`, `base`: the parent's id or null, `operation`: `{name, parameters}` or
null, `metrics`: name -> value or null). Its weights live elsewhere, behind the user's own
inspector code, so an imported model has its recipe and metrics but no weights: it shows in the
tree and the Model Map, and a comparison that needs weights says so (artifacts.manifest
`NoWeightsError`).

Importing twice adds nothing: each model's fingerprint is derived from its parent's, its
operation and its id, so the store's one-model-per-fingerprint rule finds the earlier import.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..store import LineageStore
from ..store.lineage import canonical_json
from ..store.records import ModelRecord

TOOL = "Compress and Compare"

#: metric names whose smaller values are better (Compress and Compare's file does not say which
#: way a metric points; these words do, and anything else counts as "higher is better")
_LOWER_IS_BETTER = re.compile(
    r"latency|time|size|bytes|memory|loss|perplexity|error|params|parameters|flops|macs|energy", re.I
)


class CCFormatError(UserError):
    """A models.json that does not follow Compress and Compare's format: names the file and the
    field (`models[3].base`) and says what is wrong."""

    def __init__(self, file: Path, where: str, problem: str):
        self.file, self.where, self.problem = file, where, problem
        super().__init__(f"{file}: {where}: {problem}")


@dataclass(frozen=True)
class CCMetric:
    name: str
    unit: str
    primary: bool
    higher_is_better: bool
    scale: float = 1.0  # a 0–1 fraction shown as a percentage is stored in percent, as Bonsai's are


@dataclass(frozen=True)
class CCModel:
    id: str
    base: str | None
    op: str | None
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass(frozen=True)
class CCLineage:
    file: Path
    metrics: dict[str, CCMetric]
    models: list[CCModel]  # parents before their children


@dataclass
class ImportResult:
    added: list[ModelRecord] = field(default_factory=list)
    already: list[ModelRecord] = field(default_factory=list)  # imported before: nothing changed


def read_cc_lineage(file: Path | str) -> CCLineage:
    """Parse and check a Compress and Compare models.json; CCFormatError names the bad field."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CCFormatError(file, "file", "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CCFormatError(file, "file", f"cannot be read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CCFormatError(file, f"line {e.lineno} column {e.colno}", f"not JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise CCFormatError(file, "top level", "must be an object with `metrics` and `models`")
    metrics = _read_metrics(file, data.get("metrics", []))
    raw_models = data.get("models")
    if not isinstance(raw_models, list):
        raise CCFormatError(file, "models", "must be a list of models")
    models = [_read_model(file, i, m, metrics) for i, m in enumerate(raw_models)]
    return CCLineage(file=file, metrics=metrics, models=_parents_first(file, models))


def _read_metrics(file: Path, raw: Any) -> dict[str, CCMetric]:
    if not isinstance(raw, list):
        raise CCFormatError(file, "metrics", "must be a list of metric descriptions")
    out: dict[str, CCMetric] = {}
    for i, m in enumerate(raw):
        where = f"metrics[{i}]"
        if not isinstance(m, dict):
            raise CCFormatError(file, where, "must be an object with a `name`")
        name = m.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CCFormatError(file, f"{where}.name", "must be a non-empty string")
        if name in out:
            raise CCFormatError(file, f"{where}.name", f"'{name}' is declared twice")
        unit = m.get("unit") or ""
        if not isinstance(unit, str):
            raise CCFormatError(file, f"{where}.unit", "must be a string")
        fmt = m.get("format") or ""
        scale = 1.0
        if not unit and isinstance(fmt, str) and fmt.endswith("%"):
            unit, scale = "%", 100.0  # d3's ".2%" shows a 0–1 value as a percentage
        out[name] = CCMetric(
            name=name,
            unit=unit,
            primary=bool(m.get("primary", False)),
            higher_is_better=not _LOWER_IS_BETTER.search(name),
            scale=scale,
        )
    return out


def _read_model(file: Path, i: int, m: Any, metrics: dict[str, CCMetric]) -> CCModel:
    where = f"models[{i}]"
    if not isinstance(m, dict):
        raise CCFormatError(file, where, "must be an object with an `id`")
    mid = m.get("id")
    if isinstance(mid, int) and not isinstance(mid, bool):
        mid = str(mid)
    if not isinstance(mid, str) or not mid.strip():
        raise CCFormatError(file, f"{where}.id", "must be a non-empty string")
    base = m.get("base")
    if base is not None and not isinstance(base, str):
        raise CCFormatError(file, f"{where}.base", "must be the id of another model, or null")
    operation = m.get("operation")
    op: str | None = None
    params: dict[str, Any] = {}
    if operation is not None:
        if not isinstance(operation, dict) or not isinstance(operation.get("name"), str):
            raise CCFormatError(file, f"{where}.operation", "must be null or an object with a `name`")
        op = operation["name"]
        params = operation.get("parameters") or {}
        if not isinstance(params, dict):
            raise CCFormatError(file, f"{where}.operation.parameters", "must be an object")
    if base is not None and op is None:
        raise CCFormatError(file, f"{where}.operation", f"model '{mid}' has a base but no operation")
    raw_metrics = m.get("metrics") or {}
    if not isinstance(raw_metrics, dict):
        raise CCFormatError(file, f"{where}.metrics", "must be an object of metric name -> number")
    values: dict[str, float] = {}
    for name, value in raw_metrics.items():
        if value is None:
            continue  # not measured for this model
        if name not in metrics:
            raise CCFormatError(file, f"{where}.metrics.{name}", "is not declared in the file's `metrics`")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CCFormatError(file, f"{where}.metrics.{name}", f"must be a number or null, not {value!r}")
        values[name] = float(value)
    return CCModel(id=mid, base=base, op=op, params=params, metrics=values)


def _parents_first(file: Path, models: list[CCModel]) -> list[CCModel]:
    by_id: dict[str, int] = {}
    for i, m in enumerate(models):
        if m.id in by_id:
            raise CCFormatError(file, f"models[{i}].id", f"'{m.id}' is also models[{by_id[m.id]}].id")
        by_id[m.id] = i
    for i, m in enumerate(models):
        if m.base is not None and m.base not in by_id:
            raise CCFormatError(file, f"models[{i}].base", f"'{m.base}' is not the id of a model in the file")
    out: list[CCModel] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: placed
    for m in models:
        path: list[CCModel] = []
        cur: CCModel | None = m
        while cur is not None and state.get(cur.id) != 2:
            if state.get(cur.id) == 1:
                raise CCFormatError(file, f"models[{by_id[cur.id]}].base", f"'{cur.id}' is its own ancestor")
            state[cur.id] = 1
            path.append(cur)
            cur = None if cur.base is None else models[by_id[cur.base]]
        for p in reversed(path):
            state[p.id] = 2
            out.append(p)
    return out


def _fingerprint(parent_fp: str, m: CCModel) -> str:
    text = canonical_json({"tool": TOOL, "parent": parent_fp, "id": m.id, "op": m.op, "params": m.params})
    return "cc-" + hashlib.sha256(text.encode()).hexdigest()


def import_cc_lineage(store: LineageStore, file: Path | str) -> ImportResult:
    """Add every model of `file` to the store (parents first), each with its metrics and no
    weights. A name already used by a model Bonsai made is refused before anything is added."""
    lineage = read_cc_lineage(file)
    source_file = _shown_path(lineage.file, store.workspace)
    fingerprints: dict[str, str] = {}
    for m in lineage.models:
        fingerprints[m.id] = _fingerprint("" if m.base is None else fingerprints[m.base], m)
    taken = {name for r in store.list_models() for name in (r.name, *r.aliases)}
    for m in lineage.models:
        existing = store.find_by_fingerprint(fingerprints[m.id], include_broken=True)
        if existing is None and m.id in taken:
            raise UserError(
                f"{lineage.file}: model '{m.id}' has the name of a model already in {store.root}; "
                "import into another workspace (--workspace) or rename it in the file"
            )
    result = ImportResult()
    ids: dict[str, str] = {}
    for m in lineage.models:
        existing = store.find_by_fingerprint(fingerprints[m.id], include_broken=True)
        if existing is not None:
            ids[m.id] = existing.id
            result.already.append(existing)
            continue
        source = {"tool": TOOL, "file": source_file, "id": m.id}
        record = ModelRecord(
            name=m.id,
            parent_id=None if m.base is None else ids[m.base],
            op=m.op,
            params=m.params,
            fingerprint=fingerprints[m.id],
            imported=source,
        )
        rec = store.add_model(
            record,
            _manifest_writer(source),
            metrics=[_metric(lineage.metrics[name], value) for name, value in m.metrics.items()],
        )
        ids[m.id] = rec.id
        result.added.append(rec)
    return result


def _metric(decl: CCMetric, value: float) -> dict[str, Any]:
    return {
        "name": decl.name,
        "value": value * decl.scale,
        "unit": decl.unit,
        "higher_is_better": decl.higher_is_better,
        "headline": decl.primary,
        "detail": f"imported from {TOOL}",
    }


def _manifest_writer(source: dict[str, Any]) -> Callable[[Path], None]:
    """The artifact of an imported model: a manifest that says where it came from, no weights."""
    from ..artifacts.manifest import IMPORTED_FORMAT, MANIFEST

    text = json.dumps({"format": IMPORTED_FORMAT, "format_version": 1, "imported": source, "files": []})

    def write(folder: Path) -> None:
        (folder / MANIFEST).write_text(text + "\n", encoding="utf-8")

    return write


def _shown_path(file: Path, workspace: Path) -> str:
    try:
        return str(file.resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(file.resolve())
