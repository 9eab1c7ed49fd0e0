"""The JSON Schema of `*.bonsai.yaml`, generated from the op registry and the task kinds.

The generated file ships as package data (`modelbonsai/schema/bonsai.schema.json`) so editors
without the language server (e.g. the YAML extension) can validate and complete too.
Regenerate it after changing ops or tasks:

    python -m modelbonsai.experiment.schema
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..deploy.targets import DEFAULT_TOLERANCE, TARGETS, target_names
from ..ops.registry import OpDef, Param, all_ops
from . import taskinfo
from .keys import DEVICES, DTYPES, keys_of
from .opcalls import LIST_VALUED

SCHEMA_ID = "https://modelbonsai.dev/schema/bonsai.schema.json"
SHIPPED = Path(__file__).resolve().parent.parent / "schema" / "bonsai.schema.json"


def _builtin_ops() -> list[OpDef]:
    """Only Bonsai's own ops: user ops and ops registered by tests are not part of the format."""
    return [op for op in all_ops() if op.source == "builtin" and op.fn.__module__.startswith("modelbonsai.")]


def _op_schema(op: OpDef) -> dict[str, Any]:
    params: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: _param_schema(p) for p in op.params},
        "additionalProperties": False,
    }
    required = [p.name for p in op.params if p.required]
    if required:
        params["required"] = required
    value: dict[str, Any] = params if required else {"anyOf": [params, {"type": "null"}]}
    return {
        "type": "object",
        "title": op.name,
        "description": op.summary,
        "markdownDescription": op.markdown(),
        "properties": {op.name: value},
        "required": [op.name],
        "additionalProperties": False,
    }


def _param_schema(p: Param) -> dict[str, Any]:
    s = p.json_schema()
    if p.sweepable and p.type in LIST_VALUED:
        # a list is the value itself, so a sweep is a list of lists (see keys.py, "Sweeps")
        item = {k: v for k, v in s.items() if k not in ("description", "default")}
        s = {"anyOf": [s, {"type": "array", "items": item, "minItems": 1}], "description": p.doc}
    return s


def _desc(section: str, key: str) -> str:
    return keys_of(section)[key].doc


def _callable_string() -> dict[str, Any]:
    return {"type": "string", "pattern": r"^.+:[A-Za-z_]\w*$"}


def _task_schema() -> dict[str, Any]:
    kinds = list(taskinfo.builtin_kinds())
    kind: dict[str, Any] = {
        "description": _desc("task", "kind"),
        "anyOf": [{"enum": kinds}, {"type": "string", "pattern": r"^.+:[A-Za-z_]\w*$"}]
        if kinds
        else [{"type": "string"}],
    }
    schema: dict[str, Any] = {
        "type": "object",
        "description": _desc("top", "task"),
        "properties": {
            "kind": kind,
            "data": {"type": "string", "description": _desc("task", "data")},
            "max_instances": {"type": "integer", "minimum": 1, "description": _desc("task", "max_instances")},
        },
        "required": ["kind"],
    }
    per_kind: list[dict[str, Any]] = []
    for k in kinds:
        options = taskinfo.task_options(k)
        if not options:
            continue
        props = {
            name: {"description": doc, **_json_type(typ)} for name, (typ, doc) in sorted(options.items())
        }
        per_kind.append({"if": {"properties": {"kind": {"const": k}}}, "then": {"properties": props}})
    if per_kind:
        schema["allOf"] = per_kind
    return schema


def _json_type(typ: str) -> dict[str, Any]:
    t = typ.lower().strip()
    if t in ("int", "integer"):
        return {"type": "integer"}
    if t in ("float", "number"):
        return {"type": "number"}
    if t in ("bool", "boolean"):
        return {"type": "boolean"}
    if t in ("str", "string", "path", "file", "folder", "dir"):
        return {"type": "string"}
    if t.startswith("list") or t == "array":
        return {"type": "array"}
    return {}


def _deploy_schema(section: str) -> dict[str, Any]:
    """`deploy:` (keys.py): a list of targets, or {targets, tolerance}; null or [] for none."""
    targets = {
        "type": "array",
        "items": {
            "enum": target_names(),
            "description": "; ".join(f"{t.name}: {t.doc}" for t in TARGETS.values()),
        },
        "uniqueItems": True,
    }
    return {
        "description": _desc(section, "deploy"),
        "anyOf": [
            targets,
            {
                "type": "object",
                "properties": {
                    "targets": targets,
                    "tolerance": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "default": DEFAULT_TOLERANCE,
                        "description": "largest difference of a runtime's outputs from the evaluated "
                        "model's, relative to max(1, the largest |output|)",
                    },
                },
                "required": ["targets"],
                "additionalProperties": False,
            },
            {"type": "null"},
        ],
    }


def _scan_schema() -> dict[str, Any]:
    # settings are op entries like a variant's: the same schema, referenced rather than repeated
    op_entry = {"$ref": "#/properties/variants/items/properties/ops/items"}
    patterns = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    return {
        "type": "object",
        "description": _desc("top", "scan"),
        "properties": {
            "settings": {
                "type": "array",
                "minItems": 1,
                "items": op_entry,
                "description": _desc("scan", "settings"),
            },
            "fidelity": {
                "enum": ["proxy", "full", "both"],
                "default": "proxy",
                "description": _desc("scan", "fidelity"),
            },
            "granularity": {
                "enum": ["layer", "block"],
                "default": "layer",
                "description": _desc("scan", "granularity"),
            },
            "include": {**patterns, "description": _desc("scan", "include")},
            "exclude": {**patterns, "description": _desc("scan", "exclude")},
            "batches": {
                "type": "integer",
                "minimum": 1,
                "default": 2,
                "description": _desc("scan", "batches"),
            },
            "batch_size": {
                "type": "integer",
                "minimum": 1,
                "default": 8,
                "description": _desc("scan", "batch_size"),
            },
            "max_instances": {
                "type": "integer",
                "minimum": 1,
                "default": 64,
                "description": _desc("scan", "max_instances"),
            },
        },
        "required": ["settings"],
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """The schema (draft-07) of the experiment file format, one entry per built-in op."""
    ops = _builtin_ops()
    op_entry = {
        "description": _desc("variant", "ops"),
        "anyOf": [{"enum": [op.name for op in ops]}, *(_op_schema(op) for op in ops)],
    }
    variant = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": _desc("variant", "name")},
            "from": {"type": "string", "default": "base", "description": _desc("variant", "from")},
            "ops": {
                "type": "array",
                "minItems": 1,
                "items": op_entry,
                "description": _desc("variant", "ops"),
            },
            "description": {"type": "string", "description": _desc("variant", "description")},
            "seed": {"type": "integer", "description": _desc("variant", "seed")},
            "deploy": _deploy_schema("variant"),
        },
        "required": ["name", "ops"],
        "additionalProperties": False,
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "Bonsai experiment file (*.bonsai.yaml)",
        "description": "A base model, how to evaluate it, and a tree of compressed variants.",
        "type": "object",
        "properties": {
            "seed": {"type": "integer", "default": 0, "description": _desc("top", "seed")},
            "device": {
                "default": "auto",
                "description": _desc("top", "device"),
                "anyOf": [{"enum": list(DEVICES)}, {"type": "string", "pattern": r"^cuda:\d+$"}],
            },
            "base": {
                "type": "object",
                "description": _desc("top", "base"),
                "properties": {
                    "name": {"type": "string", "description": _desc("base", "name")},
                    "load": {"type": "string", "minLength": 1, "description": _desc("base", "load")},
                    "factory": {**_callable_string(), "description": _desc("base", "factory")},
                    "args": {"type": "object", "description": _desc("base", "args")},
                    "dtype": {
                        "enum": list(DTYPES),
                        "default": "float32",
                        "description": _desc("base", "dtype"),
                    },
                    "deploy": _deploy_schema("base"),
                },
                "required": ["load"],
                "additionalProperties": False,
            },
            "task": _task_schema(),
            "ops_from": {
                "description": _desc("top", "ops_from"),
                "anyOf": [
                    {"type": "string", "pattern": r"\.py$"},
                    {"type": "array", "items": {"type": "string", "pattern": r"\.py$"}},
                ],
            },
            "variants": {"type": "array", "items": variant, "description": _desc("top", "variants")},
            "scan": _scan_schema(),
            "mlflow": {
                "description": _desc("top", "mlflow"),
                "anyOf": [
                    {"type": "boolean"},
                    {
                        "type": "object",
                        "properties": {
                            "tracking_uri": {
                                "type": "string",
                                "description": _desc("mlflow", "tracking_uri"),
                            },
                            "experiment": {"type": "string", "description": _desc("mlflow", "experiment")},
                            "artifacts": {
                                "type": "boolean",
                                "default": False,
                                "description": _desc("mlflow", "artifacts"),
                            },
                        },
                        "additionalProperties": False,
                    },
                ],
            },
            "deploy": _deploy_schema("top"),
        },
        "required": ["base", "variants"],
        "additionalProperties": False,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_schema(path: Path | None = None) -> Path:
    """Write the generated schema (by default over the shipped file) and return where."""
    target = path or SHIPPED
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(schema_text(), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = write_schema(Path(args[0]) if args else None)
    sys.stderr.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
