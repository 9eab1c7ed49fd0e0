"""Budgeted recipes: the knapsack's exact optimum against brute force on small cases, the closest
recipe when no budget can be met, and the variant it writes (parsed by the experiment parser)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from modelbonsai.experiment import load_experiment
from modelbonsai.scan.budget import options_of, under_size, variant_yaml, within_loss
from modelbonsai.scan.measure import ScanError, ScanResult
from modelbonsai.scan.spec import ScanSetting, ScanSpec
from modelbonsai.scan.units import ScanUnit
from support.workspace import experiment_head, write_workspace

SETTINGS = (ScanSetting("quantize.weights", {"bits": 4}), ScanSetting("prune.magnitude", {"sparsity": 0.5}))


def _scan(base: list[int], cost: list[list[int | None]], loss: list[list[float | None]]) -> ScanResult:
    n = len(base)
    return ScanResult(
        spec=ScanSpec(settings=SETTINGS[: len(cost)]),
        units=[ScanUnit(f"l{i}", (f"l{i}.weight",)) for i in range(n)],
        base_bytes=base,
        numel=[b // 4 for b in base],
        proxy=loss,
        bytes=cost,
    )


def _brute(scan: ScanResult) -> list[tuple[int, float, tuple[int | None, ...]]]:
    opts = options_of(scan)
    return [
        (sum(o.cost for o in combo), sum(o.loss for o in combo), tuple(o.setting for o in combo))
        for combo in itertools.product(*opts)
    ]


@pytest.mark.parametrize("seed", range(12))
def test_the_knapsack_finds_the_exact_optimum(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 6)
    base = [rng.randint(20, 120) for _ in range(n)]
    cost = [[rng.randint(3, b) if rng.random() > 0.15 else None for b in base] for _ in range(2)]
    loss = [[round(rng.uniform(0, 5), 3) for _ in base] for _ in range(2)]
    scan = _scan(base, cost, loss)
    every = _brute(scan)
    for budget in (sum(base) // 3, sum(base) // 2, sum(base)):
        fits = [e for e in every if e[0] <= budget]
        got = under_size(scan, budget)
        if not fits:
            assert not got.feasible and got.bytes == min(e[0] for e in every)
            continue
        assert got.feasible and got.exact and got.bytes <= budget
        assert got.loss == pytest.approx(min(e[1] for e in fits))
    for max_loss in (0.0, 1.0, 4.0):
        ok = [e for e in every if e[1] <= max_loss + 1e-12]
        got = within_loss(scan, max_loss)
        assert got.feasible and got.loss <= max_loss + 1e-9
        assert got.bytes == min(e[0] for e in ok)


def test_a_hand_worked_case() -> None:
    # two layers of 100 bytes; int4 saves 75 each (loss 1 on l0, 5 on l1), pruning saves 40 (loss 0.5, 0.5)
    scan = _scan([100, 100], [[25, 25], [60, 60]], [[1.0, 5.0], [0.5, 0.5]])
    r = under_size(scan, 120)  # prune both: 120 bytes, loss 1.0
    assert (r.choice, r.bytes, r.loss) == ([1, 1], 120, 1.0)
    r = under_size(scan, 100)  # int4 on l0 (25) + prune on l1 (60): 85 bytes, loss 1.5
    assert (r.choice, r.bytes, r.loss) == ([0, 1], 85, 1.5)
    r = under_size(scan, 50)  # both int4: 50 bytes, loss 6
    assert (r.choice, r.bytes, r.loss) == ([0, 0], 50, 6.0)
    r = within_loss(scan, 1.0)  # prune both: 120 bytes, loss 1.0
    assert (r.choice, r.bytes, r.loss) == ([1, 1], 120, 1.0)
    r = under_size(scan, 40)
    assert not r.feasible and r.bytes == 50 and "smallest takes 50" in r.message


def test_the_written_variant_parses_without_problems(tmp_path: Path) -> None:
    scan = _scan([256, 512, 48], [[40, 80, None], [140, 270, 30]], [[0.1, 0.2, None], [0.05, 0.3, 0.01]])
    scan.units = [ScanUnit(n, (f"{n}.weight",)) for n in ("0", "2", "4")]
    recipe = under_size(scan, 400)
    text = variant_yaml(scan, recipe, "budget-400B")
    assert text.startswith("  - name: budget-400B\n    ops:\n")
    head = experiment_head()
    file = write_workspace(tmp_path, head + text, "", hidden=(16, 8))
    parsed = load_experiment(file)
    assert parsed.errors == [] and parsed.experiment is not None, parsed.problems
    (variant,) = parsed.experiment.variants
    used = {call.name: call.params["include"] for call in variant.ops}
    names = [n for inc in used.values() for n in inc]
    assert sorted(names) == sorted(
        f"{scan.units[u].name}.weight" for u, s in enumerate(recipe.choice) if s is not None
    )


def test_a_budget_that_keeps_everything_writes_no_variant() -> None:
    scan = _scan([100], [[25]], [[3.0]])
    with pytest.raises(ScanError, match="keeps every scanned layer"):
        variant_yaml(scan, within_loss(scan, 0.0), "nothing")
