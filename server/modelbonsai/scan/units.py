"""The units a scan measures: each layer (its weight), or each block (the layers under one numbered
container such as `encoder.layer.3`), in depth order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ops.registry import match_names
from ..ops.targets import default_weight_names, param_names

if TYPE_CHECKING:
    from torch import nn

#: the shortest prefix ending in a numbered component: `encoder.layer.3`, or `2` of `2.0.weight`
_NUMBERED = re.compile(r"^((?:[^.]+\.)*?\d+)\.")


@dataclass(frozen=True)
class ScanUnit:
    name: str  # the layer's module path, or the block's
    params: tuple[str, ...]  # the weights the settings are applied to (an op's `include`)

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(p.rsplit(".", 1)[0] if "." in p else "" for p in self.params)


def scan_units(
    model: nn.Module, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), granularity: str = "layer"
) -> list[ScanUnit]:
    """The layers (or blocks) to scan: the default weight-op targets, or `include` over every
    parameter, minus `exclude`; in module order. Raises ValueError for a pattern matching nothing."""
    universe = param_names(model)
    for what, pats in (("include", include), ("exclude", exclude)):
        for p in pats:
            if not match_names(universe, [p]):
                raise ValueError(f"scan {what} pattern '{p}' matches no parameter of the model")
    chosen = match_names(universe, list(include)) if include else default_weight_names(model)
    if exclude:
        dropped = set(match_names(chosen, list(exclude)))
        chosen = [n for n in chosen if n not in dropped]
    if granularity == "layer":
        return [ScanUnit(n.rsplit(".", 1)[0] if "." in n else n, (n,)) for n in chosen]
    blocks: dict[str, list[str]] = {}
    for n in chosen:
        m = _NUMBERED.match(n)
        key = m.group(1) if m else (n.rsplit(".", 1)[0] if "." in n else n)
        blocks.setdefault(key, []).append(n)
    return [ScanUnit(k, tuple(v)) for k, v in blocks.items()]


def exact_pattern(name: str) -> str:
    """A glob pattern matching exactly `name` (fnmatch's special characters bracketed)."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)
