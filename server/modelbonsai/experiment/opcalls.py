"""Parsing and checking one op entry of a variant against the op registry."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..ops.registry import OpDef, Param, closest_op, get_op
from .model import OpCall
from .problems import Collector, did_you_mean
from .sweeps import MAX_VARIANTS
from .yamlnodes import MappingNode, Node, ScalarNode, SequenceNode, is_null, node_range, to_value, type_name

#: Parameter types whose value is itself a list: a list is the value, a list of lists a sweep.
LIST_VALUED = ("patterns", "int_list")


def is_sweep(param: Param | None, node: Node) -> bool:
    """Whether a parameter's value node is a sweep (several values) rather than one value."""
    if not isinstance(node, SequenceNode):
        return False
    if param is not None and param.type in LIST_VALUED:
        return bool(node.value) and all(isinstance(n, SequenceNode) for n in node.value)
    return True


def user_op_names(path: Path) -> set[str] | str:
    """Op names a user op file registers (`@register_op("name", ...)`), read without running it.

    Returns a message instead when the file is not valid Python.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        return f"{path.name} is not valid Python: {e.msg} (line {e.lineno})"
    except (OSError, UnicodeDecodeError) as e:
        return f"cannot read {path.name}: {e}"
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        first = node.args[0]
        if fname == "register_op" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def _problem_code(p: Param, value: Any) -> str:
    """`out-of-range` when the value has the right type but not an allowed value, else `wrong-type`."""
    if p.type == "enum":
        return "out-of-range" if isinstance(value, str) else "wrong-type"
    if p.type in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
        if p.type == "int" and not isinstance(value, int):
            return "wrong-type"
        return "out-of-range"
    return "wrong-type"


def _check_value(c: Collector, op: OpDef, p: Param, node: Node) -> Any:
    if isinstance(node, MappingNode):
        c.add(node, f"{op.name}: '{p.name}' must be {_expects(p)}, got a mapping", "wrong-type")
        return None
    value = to_value(node)
    msg = p.check(value)
    if msg:
        c.add(node, f"{op.name}: {msg}", _problem_code(p, value))
    return value


def _sweep_key(value: Any) -> Any:
    """A hashable stand-in equal where the values are equal (==: 1 and 1.0 are the same value),
    so duplicates are found in one pass (lists, e.g. swept patterns, become tuples)."""
    if isinstance(value, list):
        return ("list", tuple(_sweep_key(x) for x in value))
    if isinstance(value, dict):
        return ("dict", repr(value))
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return value


def _expects(p: Param) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "enum": "one of " + ", ".join(p.choices),
        "patterns": "a glob pattern or a list of them",
        "int_list": "a list of integers",
    }.get(p.type, p.type)


def parse_op(c: Collector, item: Node, user_ops: set[str]) -> OpCall | None:
    """One `ops:` list item: `- name`, `- name: {params}` or `- name:` + indented params."""
    rng = node_range(item)
    if isinstance(item, ScalarNode) and not is_null(item):
        name = to_value(item)
        if not isinstance(name, str):
            c.add(item, f"an op is named by a string, got {type_name(item)}", "wrong-type")
            return None
        return _op_call(c, name, item, None, rng, user_ops)
    if not isinstance(item, MappingNode) or not item.value:
        c.add(item, "each op is `- op.name: {param: value, ...}` or `- op.name`", "wrong-type")
        return None
    name_node, params_node = item.value[0]
    name = to_value(name_node)
    if not isinstance(name, str):
        c.add(name_node, f"an op is named by a string, got {type_name(name_node)}", "wrong-type")
        return None
    call = _op_call(c, name, name_node, params_node, rng, user_ops)
    op = get_op(name)
    for extra_key, _ in item.value[1:]:
        extra = to_value(extra_key)
        if op is not None and isinstance(extra, str) and op.param(extra) is not None:
            c.add(
                extra_key,
                f"'{extra}' is a parameter of {name}: indent it under the op name, or write "
                f"`- {name}: {{{extra}: ...}}`",
                "unknown-key",
            )
        else:
            c.add(extra_key, f"one op per list item: start '{extra}' with its own `- `", "unknown-key")
    return call


def _op_call(
    c: Collector, name: str, name_node: Node, params_node: Node | None, rng: Any, user_ops: set[str]
) -> OpCall | None:
    call = OpCall(name=name, params={}, range=rng, name_range=node_range(name_node))
    op = get_op(name)
    if params_node is not None and not is_null(params_node) and not isinstance(params_node, MappingNode):
        c.add(
            params_node,
            f"the parameters of {name} must be a mapping, got {type_name(params_node)}",
            "wrong-type",
        )
        params_node = None
    given = params_node.value if isinstance(params_node, MappingNode) else []
    if op is None:
        if name not in user_ops:
            hint = closest_op(name)
            suggestion = f"; did you mean '{hint}'?" if hint else did_you_mean(name, user_ops)
            c.add(name_node, f"unknown op '{name}'{suggestion}", "unknown-op")
        # An op from an ops_from file that is not loaded yet: keep its parameters as written.
        maybe: list[str] = []
        for k, v in given:
            key = str(to_value(k))
            call.params[key] = to_value(v)
            call.key_ranges[key] = node_range(k)
            call.value_ranges[key] = node_range(v)
            if isinstance(v, SequenceNode) and v.value:
                call.item_ranges[key] = [node_range(n) for n in v.value]
                maybe.append(key)
        call.maybe_swept = tuple(maybe)
        return call if name in user_ops else None
    swept: list[str] = []
    seen: set[str] = set()
    suggested: set[str] = set()  # parameters an unknown one was taken for ("did you mean")
    for k, v in given:
        key = to_value(k)
        if not isinstance(key, str):
            c.add(k, f"parameter names of {name} are strings, got {type_name(k)}", "wrong-type")
            continue
        if key in seen:
            c.add(k, f"{name}: parameter '{key}' is given twice", "duplicate-key")
            continue
        seen.add(key)
        p = op.param(key)
        if p is None:
            hint = did_you_mean(key, [q.name for q in op.params])
            c.add(k, f"unknown parameter '{key}' for {name}{hint}", "unknown-param")
            suggested.update(q.name for q in op.params if hint == f"; did you mean '{q.name}'?")
            continue
        call.key_ranges[key] = node_range(k)
        call.value_ranges[key] = node_range(v)
        if isinstance(v, SequenceNode):
            call.item_ranges[key] = [node_range(n) for n in v.value]
        if is_sweep(p, v):
            assert isinstance(v, SequenceNode)
            if not p.sweepable:
                c.add(v, f"{name}: '{key}' cannot be swept; give one value", "sweep")
                continue
            if not v.value:
                c.add(v, f"{name}: the sweep of '{key}' is empty; give at least one value", "sweep")
                continue
            if len(v.value) > MAX_VARIANTS:  # refused before checking each of its values
                c.add(
                    v,
                    f"{name}: '{key}' sweeps {len(v.value):,} values, and a file makes at most "
                    f"{MAX_VARIANTS} variants; sweep fewer values",
                    "sweep",
                )
                continue
            values = [_check_value(c, op, p, n) for n in v.value]
            seen_values: set[Any] = set()
            for value, n in zip(values, v.value, strict=True):
                k = _sweep_key(value)
                if k in seen_values:
                    c.add(n, f"{name}: '{key}' sweeps the value {value!r} twice", "sweep")
                seen_values.add(k)
            call.params[key] = values
            swept.append(key)
        else:
            call.params[key] = _check_value(c, op, p, v)
    for p in op.params:
        # `facter: 2` already said "did you mean 'factor'": not also that factor is missing
        if p.required and p.name not in seen and p.name not in suggested:
            c.add(name_node, f"{name} needs parameter '{p.name}' ({p.doc})", "missing-required")
    call.swept = tuple(swept)
    return call
