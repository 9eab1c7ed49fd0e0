"""ScanJob through the service: measured once, stored, read back; cancelled before it starts
measuring it stores nothing; a budget over the stored scan gives the recipe and its variant text."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from modelbonsai.errors import NotFoundError, UserError
from modelbonsai.ops.registry import Cancelled
from modelbonsai.scan.budget import under_size, variant_yaml, within_loss
from modelbonsai.scan.measure import ScanResult
from modelbonsai.service import QuietReporter, ScanDone, ScanJob, handle
from modelbonsai.service.scan import budget_variant, scan_by_id, scans_of
from modelbonsai.store import LineageStore
from support.workspace import experiment_head, write_workspace

SCAN = """\
scan:
  settings:
    - quantize.weights: {bits: [2, 8], granularity: tensor}
  fidelity: proxy
"""


def _file(root: Path, scan: str = SCAN) -> Path:
    head = experiment_head().replace("variants:\n", scan + "variants:\n")
    return write_workspace(
        root, head + "  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n", ""
    )


class Cancelling(QuietReporter):
    def cancelled(self) -> bool:
        return True


def test_a_scan_job_is_stored_once_and_read_back(tmp_path: Path) -> None:
    exp = _file(tmp_path)
    job = ScanJob(file=str(exp), folder=str(tmp_path), device="cpu")
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(Cancelled):
        handle(job, Cancelling())
    with LineageStore.open(tmp_path) as store:
        assert scans_of(store) == []  # nothing partial is stored

    rep = QuietReporter()
    done = handle(job, rep)
    assert isinstance(done, ScanDone)
    assert (done.reused, done.units, done.settings) == (False, 2, 2)
    assert rep.messages[-1] == "scan measured: 2 layers × 2 settings"
    again = handle(job, QuietReporter())
    assert again == ScanDone(id=done.id, reused=True, units=2, settings=2)

    with LineageStore.open(tmp_path) as store:
        (rec,) = scans_of(store, exp)
        assert rec.id == done.id and rec.experiment_file == "exp.bonsai.yaml"
        assert scans_of(store, tmp_path / "other.bonsai.yaml") == []
        assert scan_by_id(store, done.id) == rec
        with pytest.raises(NotFoundError, match="no stored scan 'nope'"):
            scan_by_id(store, "nope")
    result = ScanResult.from_json(rec.result)
    assert [u.name for u in result.units] == ["0", "2"]
    assert result.proxy is not None and result.full is None
    # 2-bit weights are worse than 8-bit ones on every layer
    assert all(result.proxy[0][u] > result.proxy[1][u] > 0 for u in range(2))  # type: ignore[operator]

    # a size budget between the smallest and the base: the exact knapsack's recipe and its text
    smallest = sum(min(b for b in (result.bytes[s][u] for s in range(2)) if b is not None) for u in range(2))
    budget = (smallest + sum(result.base_bytes)) // 2
    got = budget_variant(result, max_bytes=budget, name="small")
    want = under_size(result, budget)
    assert got.recipe.choice == want.choice and got.recipe.feasible
    assert got.yaml == variant_yaml(result, want, "small")
    assert got.yaml.startswith("  - name: small\n    ops:\n      - quantize.weights: {")
    assert got.base_bytes == sum(result.base_bytes)
    # too small a budget: the closest recipe (the smallest one), said plainly
    tight = budget_variant(result, max_bytes=10)
    assert not tight.recipe.feasible and tight.recipe.bytes == smallest
    assert tight.recipe.message == (
        f"no recipe stores the scanned weights in 10 bytes: the smallest takes {smallest}"
    )
    assert tight.name == "budget-10B"
    # a loss budget of 0 keeps every layer as it is: no variant to write
    none = budget_variant(result, max_loss=0.0)
    assert none.recipe.choice == within_loss(result, 0.0).choice == [None, None]
    assert none.yaml == "" and none.name == "within-0"
    assert budget_variant(result, max_bytes=1_500_000).name == "budget-1.5MB"
    with pytest.raises(UserError, match="give exactly one"):
        budget_variant(result)
    with pytest.raises(UserError, match="0 or more"):
        budget_variant(result, max_loss=-1)


def test_a_file_without_a_scan_section_says_what_to_add(tmp_path: Path) -> None:
    exp = _file(tmp_path, scan="")
    with pytest.raises(UserError) as e:
        handle(ScanJob(file=str(exp), folder=str(tmp_path), device="cpu"))
    assert str(e.value).startswith(
        "exp.bonsai.yaml has no `scan:` section: add one, e.g.\nscan:\n  settings:\n"
    )
