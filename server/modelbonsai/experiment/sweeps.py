"""Sweep expansion: a variant with list-valued parameters becomes a family of siblings.

The naming scheme and the family rule are documented in `keys.py` (the format reference).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, replace
from typing import Any

from .model import Variant

#: At most this many variants per file after expansion (families multiply quickly).
MAX_VARIANTS = 2000

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Axis:
    """One swept parameter of a declared variant."""

    key: str  # how the name template and sweep_values call it
    op_index: int
    param: str
    values: tuple[Any, ...]


def axes_of(v: Variant, inherited: list[str]) -> list[Axis]:
    """The variant's own swept parameters, keyed by param name; when that key is taken (by an
    earlier axis or an inherited key) by `op.param`, then `op.param2`, `op.param3`, ...

    A list-valued parameter of a user op not loaded yet (`OpCall.maybe_swept`) is swept when the
    name template names it, as `{param}` or `{op.param}`: the file says so, though the op's
    schema (whether the parameter takes a list) is not known until the run imports it."""
    taken = set(inherited)
    named = set(placeholders(v.name))
    out: list[Axis] = []
    for i, call in enumerate(v.ops):
        named_here = [p for p in call.maybe_swept if p in named or f"{call.name}.{p}" in named]
        for param in (*call.swept, *named_here):
            key = param
            if key in taken:
                key = f"{call.name}.{param}"
                n = 2
                while key in taken:
                    key = f"{call.name}.{param}{n}"
                    n += 1
            taken.add(key)
            out.append(Axis(key, i, param, tuple(call.params[param])))
    return out


def count(axes: list[Axis]) -> int:
    n = 1
    for a in axes:
        n *= len(a.values)
    return n


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def format_value(value: Any) -> str:
    """A swept value as it appears in a name: YAML spelling, lists joined by `_`, safe characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "_".join(format_value(x) for x in value)
    else:
        text = str(value)
    return _UNSAFE.sub("_", text)


def render_name(template: str, binding: dict[str, Any]) -> str:
    """Fill `{key}` placeholders; append `-<key><value>` for swept keys without one."""
    used = set(placeholders(template))
    name = _PLACEHOLDER.sub(
        lambda m: format_value(binding[m.group(1)]) if m.group(1) in binding else m.group(0), template
    )
    for key, value in binding.items():
        if key not in used:
            name += f"-{key}{format_value(value)}"
    return name


def expand(v: Variant, parent_name: str, inherited: dict[str, Any], axes: list[Axis]) -> list[Variant]:
    """The siblings of declared variant `v` under one parent (one per combination of values)."""
    out: list[Variant] = []
    combos = itertools.product(*(a.values for a in axes)) if axes else [()]
    for combo in combos:
        binding = dict(inherited)
        ops = [replace(call, params=copy.deepcopy(call.params), swept=(), maybe_swept=()) for call in v.ops]
        for axis, value in zip(axes, combo, strict=True):
            binding[axis.key] = value
            ops[axis.op_index].params[axis.param] = value
        swept = bool(binding)
        out.append(
            replace(
                v,
                name=render_name(v.name, binding) if swept else v.name,
                parent=parent_name,
                ops=ops,
                sweep_of=v.name if swept else None,
                sweep_values=binding,
            )
        )
    return out
