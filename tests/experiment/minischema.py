"""A small JSON Schema (draft-07 subset) checker, enough to test the generated schema without a
new dependency: type, enum, const, properties, required, additionalProperties, items, minItems,
minLength, minimum/maximum (and exclusive), pattern, anyOf, allOf, if/then."""

from __future__ import annotations

import re
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def errors(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    out: list[str] = []
    t = schema.get("type")
    if t is not None and not _TYPES[t](value):
        return [f"{where}: not {t}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in enum")
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: not {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{where}: not above exclusiveMinimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append(f"{where}: not below exclusiveMaximum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{where}: does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where}: too short")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: too few items")
        if "items" in schema:
            for i, v in enumerate(value):
                out += errors(schema["items"], v, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                out.append(f"{where}: missing {k}")
        for k, v in value.items():
            if k in props:
                out += errors(props[k], v, f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unexpected {k}")
    if "anyOf" in schema and all(errors(s, value, where) for s in schema["anyOf"]):
        out.append(f"{where}: matches none of anyOf")
    for s in schema.get("allOf", []):
        out += errors(s, value, where)
    if "if" in schema and not errors(schema["if"], value, where):
        out += errors(schema.get("then", {}), value, where)
    return out
