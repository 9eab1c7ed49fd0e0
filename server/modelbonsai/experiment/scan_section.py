"""The experiment file's `scan:` section (a sensitivity scan of the base model), checked at the
exact place like the rest of the file:

```yaml
scan:
  settings:                      # each applied to one layer (or block) at a time
    - quantize.weights: {bits: [3, 4], granularity: group, group_size: 32}   # a list: one setting each
    - prune.magnitude: {sparsity: 0.5}
  fidelity: both                 # proxy (default) | full | both
  granularity: layer             # layer (default) | block
  exclude: ["*classifier*"]
  batches: 2                     # proxy: calibration batches
  max_instances: 64              # full: instances evaluated per setting and layer
```
"""

from __future__ import annotations

import itertools
from typing import Any

from ..scan.spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHES,
    DEFAULT_MAX_INSTANCES,
    SCANNABLE_PARAM,
    ScanSetting,
    ScanSpec,
)
from .opcalls import parse_op
from .problems import Collector
from .yamlnodes import MappingNode, Node, ScalarNode, SequenceNode, is_null, to_value, type_name

SCAN_KEYS = (
    "settings",
    "fidelity",
    "granularity",
    "include",
    "exclude",
    "batches",
    "batch_size",
    "max_instances",
)
FIDELITIES = ("proxy", "full", "both")
GRANULARITIES = ("layer", "block")
#: a scan applies each setting to every layer once; more settings than this is a typo's sweep
MAX_SETTINGS = 64


def parse_scan(c: Collector, entry: tuple[Node, Node], user_ops: set[str], seed: int) -> ScanSpec | None:
    key, node = entry
    if not isinstance(node, MappingNode):
        c.add(
            node, f"'scan' is a mapping with `settings:` (a list of ops), got {type_name(node)}", "wrong-type"
        )
        return None
    items = c.mapping_items(node, SCAN_KEYS, "scan")
    if "settings" not in items:
        c.add(key, "'scan' needs `settings:` (the ops to apply to one layer at a time)", "missing-required")
        return None
    settings = _settings(c, items["settings"][1], user_ops)
    fidelity = _choice(c, items.get("fidelity"), FIDELITIES, "proxy")
    granularity = _choice(c, items.get("granularity"), GRANULARITIES, "layer")
    include = _patterns(c, items.get("include"))
    exclude = _patterns(c, items.get("exclude"))
    batches = _count(c, items.get("batches"), DEFAULT_BATCHES)
    batch_size = _count(c, items.get("batch_size"), DEFAULT_BATCH_SIZE)
    max_instances = _count(c, items.get("max_instances"), DEFAULT_MAX_INSTANCES)
    if not settings:
        return None
    return ScanSpec(
        settings=tuple(settings),
        include=include,
        exclude=exclude,
        granularity=granularity,  # type: ignore[arg-type]  # checked against GRANULARITIES
        fidelity=fidelity,  # type: ignore[arg-type]  # checked against FIDELITIES
        batches=batches,
        batch_size=batch_size,
        max_instances=max_instances,
        seed=seed,
    )


def _settings(c: Collector, node: Node, user_ops: set[str]) -> list[ScanSetting]:
    if not isinstance(node, SequenceNode) or not node.value:
        c.add(node, "'settings' lists ops, each `- op.name: {param: value}`", "wrong-type")
        return []
    out: list[ScanSetting] = []
    for item in node.value:
        call = parse_op(c, item, user_ops)
        if call is None:
            continue
        from ..ops.registry import get_op

        op = get_op(call.name)
        if op is not None and op.param(SCANNABLE_PARAM) is None:
            c.add(
                item,
                f"{call.name} works on the whole model (it has no `include`), so a scan cannot apply "
                "it to one layer at a time",
                "out-of-range",
            )
            continue
        for given in (SCANNABLE_PARAM, "exclude"):
            if given in call.params:
                c.add(
                    call.key_ranges.get(given, item),
                    f"a scan setting chooses its layers itself: write `{given}` under `scan:`, not in the op",
                    "unknown-key",
                )
        swept = list(call.swept)
        values = [call.params[p] for p in swept]
        n = 1
        for v in values:
            n *= len(v)
        if len(out) + n > MAX_SETTINGS:  # counted before expanding: a typo's sweep can be huge
            c.add(
                node,
                f"the scan lists {len(out) + n} settings or more; at most {MAX_SETTINGS}",
                "out-of-range",
            )
            return []
        for combo in itertools.product(*values) if swept else [()]:
            params: dict[str, Any] = {
                k: v for k, v in call.params.items() if k not in (SCANNABLE_PARAM, "exclude")
            }
            params.update(zip(swept, combo, strict=True))
            out.append(ScanSetting(call.name, params))
    return out


def _choice(c: Collector, entry: tuple[Node, Node] | None, options: tuple[str, ...], default: str) -> str:
    if entry is None or is_null(entry[1]):
        return default
    v = to_value(entry[1])
    if v not in options:
        c.add(entry[1], f"'{to_value(entry[0])}' is one of {', '.join(options)}", "out-of-range")
        return default
    return str(v)


def _patterns(c: Collector, entry: tuple[Node, Node] | None) -> tuple[str, ...]:
    if entry is None or is_null(entry[1]):
        return ()
    node = entry[1]
    nodes = node.value if isinstance(node, SequenceNode) else [node]
    out: list[str] = []
    for n in nodes:
        v = to_value(n)
        if not isinstance(n, ScalarNode) or not isinstance(v, str):
            c.add(n, f"a pattern is a string (glob over parameter names), got {type_name(n)}", "wrong-type")
        else:
            out.append(v)
    return tuple(out)


def _count(c: Collector, entry: tuple[Node, Node] | None, default: int) -> int:
    if entry is None or is_null(entry[1]):
        return default
    v = to_value(entry[1])
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        c.add(
            entry[1], f"'{to_value(entry[0])}' is a positive integer, got {type_name(entry[1])}", "wrong-type"
        )
        return default
    return v
