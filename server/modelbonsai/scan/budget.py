"""A per-layer recipe under a budget, solved over a scan: each unit keeps its base weights or takes
one scanned setting; the sensitivities add up (the scan measured each unit alone), so the best
recipe is a multiple-choice knapsack, solved exactly by dynamic programming over stored bytes.

- size budget: the least total sensitivity whose stored bytes fit `max_bytes`;
- quality budget: the fewest stored bytes whose total sensitivity stays within `max_loss` (in the
  full scan's metric unit, or the proxy's relative error when only the proxy was measured).

Costs are whole bytes; beyond `MAX_CELLS` cost cells they are grouped into larger steps, rounded
up, so a recipe found still fits (`Recipe.exact` says whether the grouping was needed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .measure import ScanError, ScanResult
from .units import exact_pattern

MAX_CELLS = 200_000


@dataclass(frozen=True)
class Option:
    cost: int  # stored bytes
    loss: float  # sensitivity (0 for the base weights)
    setting: int | None  # index into the scan's settings; None: keep the base weights


@dataclass
class Recipe:
    choice: list[int | None]  # per unit: the setting index, or None (base weights)
    bytes: int
    loss: float
    feasible: bool  # False: no recipe meets the budget; this is the closest found
    exact: bool = True
    message: str = ""
    unit_names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "bytes": self.bytes,
            "loss": self.loss,
            "feasible": self.feasible,
            "exact": self.exact,
            "message": self.message,
        }


def options_of(scan: ScanResult) -> list[list[Option]]:
    """Per unit: its base weights, and each setting measured on it (skipped ones left out)."""
    out: list[list[Option]] = []
    for u in range(len(scan.units)):
        opts = [Option(scan.base_bytes[u], 0.0, None)]
        for s in range(len(scan.spec.settings)):
            cost, loss = scan.bytes[s][u], scan.sensitivity(s, u)
            if cost is not None and loss is not None:
                opts.append(Option(int(cost), max(float(loss), 0.0), s))
        out.append(opts)
    return out


def _solve(options: list[list[Option]]) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """dp[c]: the least loss with total cost at most c * step; choice[u, c]: unit u's option there."""
    top = sum(max(o.cost for o in opts) for opts in options)
    step = max(1, math.ceil(top / MAX_CELLS))
    cells = math.ceil(top / step) + 1
    dp = np.zeros(cells)
    choice = np.zeros((len(options), cells), dtype=np.int16)
    for u, opts in enumerate(options):
        new = np.full(cells, np.inf)
        pick = np.zeros(cells, dtype=np.int16)
        for k, o in enumerate(opts):
            c = math.ceil(o.cost / step)
            cand = np.full(cells, np.inf)
            cand[c:] = dp[: cells - c] + o.loss
            better = cand < new
            new[better] = cand[better]
            pick[better] = k
        dp, choice[u] = new, pick
    return dp, choice, step, step == 1


def _backtrack(options: list[list[Option]], choice: np.ndarray, cell: int, step: int) -> list[Option]:
    picked: list[Option] = []
    for u in range(len(options) - 1, -1, -1):
        o = options[u][int(choice[u, cell])]
        picked.append(o)
        cell -= math.ceil(o.cost / step)
    picked.reverse()
    return picked


def _recipe(scan: ScanResult, picked: list[Option], feasible: bool, exact: bool, message: str) -> Recipe:
    return Recipe(
        choice=[o.setting for o in picked],
        bytes=sum(o.cost for o in picked),
        loss=sum(o.loss for o in picked),
        feasible=feasible,
        exact=exact,
        message=message,
        unit_names=[u.name for u in scan.units],
    )


def under_size(scan: ScanResult, max_bytes: int) -> Recipe:
    """The least-loss recipe whose weights store in at most `max_bytes`."""
    options = options_of(scan)
    dp, choice, step, exact = _solve(options)
    cell = min(max_bytes // step, len(dp) - 1)
    if cell < 0 or not np.isfinite(dp[cell]):
        smallest = [min(opts, key=lambda o: (o.cost, o.loss)) for opts in options]
        total = sum(o.cost for o in smallest)
        return _recipe(
            scan,
            smallest,
            False,
            exact,
            f"no recipe stores the scanned weights in {max_bytes} bytes: the smallest takes {total}",
        )
    return _recipe(scan, _backtrack(options, choice, cell, step), True, exact, "")


def within_loss(scan: ScanResult, max_loss: float) -> Recipe:
    """The smallest recipe whose total sensitivity is at most `max_loss`."""
    options = options_of(scan)
    dp, choice, step, exact = _solve(options)
    ok = np.nonzero(dp <= max_loss + 1e-12)[0]
    if not len(ok):  # cannot happen while the base weights (loss 0) are an option, kept for safety
        return _recipe(scan, [opts[0] for opts in options], False, exact, "no recipe stays within the budget")
    return _recipe(scan, _backtrack(options, choice, int(ok[0]), step), True, exact, "")


def variant_yaml(
    scan: ScanResult, recipe: Recipe, name: str, parent: str | None = None, indent: str = "  "
) -> str:
    """The recipe as an experiment-file variant: one op per setting used, each with `include`
    naming exactly the weights it applies to (so no two ops touch one layer)."""
    by_setting: dict[int, list[str]] = {}
    for u, s in enumerate(recipe.choice):
        if s is not None:
            by_setting.setdefault(s, []).extend(scan.units[u].params)
    lines = [f"{indent}- name: {name}"]
    if parent:
        lines.append(f"{indent}  from: {parent}")
    if not by_setting:
        raise ScanError(
            "the budget keeps every scanned layer as it is in the base: there is no variant to write"
        )
    lines.append(f"{indent}  ops:")
    for s in sorted(by_setting):
        setting = scan.spec.settings[s]
        args = [f"{k}: {_yaml(v)}" for k, v in setting.params.items() if k not in ("include", "exclude")]
        args.append("include: [" + ", ".join(_yaml(exact_pattern(p)) for p in by_setting[s]) + "]")
        lines.append(f"{indent}    - {setting.op}: {{{', '.join(args)}}}")
    return "\n".join(lines) + "\n"


def _yaml(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        plain = v and all(c.isalnum() or c in "._-/" for c in v) and not v[0].isdigit()
        return (
            v
            if plain and v.lower() not in ("true", "false", "null", "yes", "no", "on", "off")
            else json.dumps(v)
        )
    return json.dumps(v)
