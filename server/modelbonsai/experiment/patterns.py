"""Include/exclude patterns checked against the base model's parameter names.

Parsing cannot do this (it does not load the model); the language server calls
:func:`check_patterns` once it knows the names, and the runner may call it before running.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ops.registry import get_op, match_names
from .model import Experiment, OpCall, Problem, Range


def check_patterns(experiment: Experiment, param_names: Sequence[str]) -> list[Problem]:
    """A warning for every include/exclude pattern (any op parameter of type `patterns`) that
    matches no parameter of the base model, at the pattern itself."""
    names = list(param_names)
    problems: list[Problem] = []
    for variant in experiment.declared:
        for call in variant.ops:
            op = get_op(call.name)
            if op is None:
                continue
            for p in op.params:
                if p.type != "patterns" or p.name not in call.params:
                    continue
                for pattern, rng in _patterns_with_ranges(call.params[p.name], call, p.name):
                    if not match_names(names, pattern):
                        problems.append(
                            Problem(
                                experiment.path,
                                rng,
                                f"{call.name}: {p.name} pattern '{pattern}' matches no parameter of the base "
                                f"model {experiment.base.name} ({len(names)} parameters)",
                                "warning",
                                "pattern-no-match",
                            )
                        )
    return problems


def _patterns_with_ranges(value: object, call: OpCall, param: str) -> list[tuple[str, Range]]:
    whole = call.value_ranges.get(param, call.name_range)
    items = call.item_ranges.get(param, [])
    out: list[tuple[str, Range]] = []
    if isinstance(value, str):
        out.append((value, whole))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            rng = items[i] if i < len(items) else whole
            if isinstance(v, str):
                out.append((v, rng))
            elif isinstance(v, list):  # a sweep of pattern lists: item ranges are the inner lists
                out.extend((x, rng) for x in v if isinstance(x, str))
    return out
