"""The sensitivity scan on the toy MLP: proxy and full values against a direct computation, stored
bytes, skipped layers, blocks, the stored record (reused, never partial)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from modelbonsai.experiment import load_experiment
from modelbonsai.fingerprints import base_spec_dict
from modelbonsai.load import load_base
from modelbonsai.ops.registry import CompressedModel
from modelbonsai.scan.experiment import experiment_scan_fingerprint, scan_experiment
from modelbonsai.scan.measure import ScanError, ScanResult, run_scan, spearman, tensor_bytes
from modelbonsai.scan.spec import ScanSetting, ScanSpec
from modelbonsai.scan.units import exact_pattern, scan_units
from modelbonsai.store import LineageStore
from modelbonsai.store.scans import get_scan, list_scans
from modelbonsai.tasks import make_task
from support.workspace import experiment_head, write_workspace

PRUNE = ScanSetting("prune.magnitude", {"sparsity": 0.5})
INT4 = ScanSetting("quantize.weights", {"bits": 4, "granularity": "tensor"})
CPU = torch.device("cpu")


@pytest.fixture
def exp(tmp_path: Path):  # type: ignore[no-untyped-def]
    file = write_workspace(
        tmp_path,
        experiment_head() + "  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n",
        "",
        hidden=(16, 8),
    )
    parsed = load_experiment(file)
    assert parsed.experiment is not None, parsed.problems
    return parsed.experiment


def _base(exp) -> CompressedModel:  # type: ignore[no-untyped-def]
    return CompressedModel(module=load_base(base_spec_dict(exp), exp.root).eval())


def test_units_are_the_weight_layers_in_depth_order_or_their_blocks() -> None:
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 4),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)),
    )
    assert [(u.name, u.params) for u in scan_units(net)] == [
        ("0", ("0.weight",)),
        ("2.0", ("2.0.weight",)),
        ("2.1", ("2.1.weight",)),
    ]
    assert [(u.name, u.params) for u in scan_units(net, granularity="block")] == [
        ("0", ("0.weight",)),
        ("2", ("2.0.weight", "2.1.weight")),
    ]
    assert [u.name for u in scan_units(net, exclude=("2.*",))] == ["0"]
    with pytest.raises(ValueError, match="scan include pattern 'zz' matches no parameter"):
        scan_units(net, include=("zz",))
    assert exact_pattern("a.b[1]*") == "a.b[[]1[]][*]"


def _direct_proxy(exp, layer: str, prune_weight) -> float:  # type: ignore[no-untyped-def]
    """The proxy computed directly: layer `layer` of the base on the base's own inputs to it,
    before and after `prune_weight` changes its weight."""
    base = _base(exp).module
    task = make_task(exp)
    mod = base.get_submodule(layer)
    seen: list[torch.Tensor] = []
    h = mod.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        for batch in task.calibration_batches(2, 8, 0):
            base(batch.inputs)
    h.remove()
    changed = torch.nn.Linear(mod.in_features, mod.out_features)
    changed.load_state_dict(mod.state_dict())
    with torch.no_grad():
        changed.weight.copy_(prune_weight(mod.weight.detach().clone()))
        num = sum(float(((changed(x) - mod(x)) ** 2).sum()) for x in seen)
        den = sum(float((mod(x) ** 2).sum()) for x in seen)
    return math.sqrt(num / den)


def _magnitude(w: torch.Tensor, sparsity: float = 0.5) -> torch.Tensor:
    k = round(sparsity * w.numel())
    idx = w.abs().flatten().argsort()[:k]
    out = w.flatten().clone()
    out[idx] = 0
    return out.view_as(w)


def test_proxy_values_match_a_direct_computation(exp) -> None:  # type: ignore[no-untyped-def]
    result = run_scan(_base(exp), ScanSpec(settings=(PRUNE,)), task=make_task(exp), device=CPU)
    assert [u.name for u in result.units] == ["0", "2", "4"]
    for ui, layer in enumerate(["0", "2", "4"]):
        assert result.proxy is not None
        assert result.proxy[0][ui] == pytest.approx(_direct_proxy(exp, layer, _magnitude), rel=1e-5)
    assert result.full is None and result.skipped == {}


def test_full_values_are_the_headline_loss_on_the_subset(exp) -> None:  # type: ignore[no-untyped-def]
    spec = ScanSpec(settings=(PRUNE,), fidelity="both", max_instances=16)
    result = run_scan(
        _base(exp), spec, task=make_task(exp), device=CPU, full_task=make_task(exp, max_instances=16)
    )
    assert result.metric is not None and result.metric["name"] == "accuracy"
    full_task = make_task(exp, max_instances=16)
    base = _base(exp).module
    with torch.no_grad():
        base_acc = next(m.value for m in full_task.evaluate(base, CPU).metrics if m.name == "accuracy")
        assert result.metric["base"] == base_acc
        for ui, layer in enumerate(["0", "2", "4"]):
            net = _base(exp).module
            w = net.get_submodule(layer).weight
            w.copy_(_magnitude(w.detach().clone()))
            acc = next(m.value for m in full_task.evaluate(net, CPU).metrics if m.name == "accuracy")
            assert result.full is not None and result.full[0][ui] == pytest.approx(base_acc - acc)
    assert result.rank_correlation(0) is None or -1.0 <= result.rank_correlation(0) <= 1.0


def test_stored_bytes_follow_the_artifact_forms(exp) -> None:  # type: ignore[no-untyped-def]
    base = _base(exp)
    result = run_scan(base, ScanSpec(settings=(INT4,)), task=make_task(exp), device=CPU)
    numel = [16 * 4, 8 * 16, 3 * 8]
    assert result.numel == numel
    assert (
        result.base_bytes == [4 * n for n in numel] == [tensor_bytes(base, u.params[0]) for u in result.units]
    )
    for ui, n in enumerate(numel):
        b = result.bytes[0][ui]
        assert b is not None and math.ceil(n / 2) <= b < 4 * n // 4  # 4-bit codes and a scale


def test_a_layer_the_op_cannot_take_is_skipped_with_its_reason(exp) -> None:  # type: ignore[no-untyped-def]
    nm = ScanSetting("prune.nm", {"n": 2, "m": 32})
    result = run_scan(_base(exp), ScanSpec(settings=(nm,)), task=make_task(exp), device=CPU)
    # input sizes 4, 16, 8: no layer has a multiple of 32 inputs
    assert set(result.skipped) == {"0:0", "0:1", "0:2"}
    assert all("prune.nm" in why for why in result.skipped.values())
    assert result.proxy == [[None, None, None]]


def test_ops_without_per_layer_targets_and_missing_tasks_are_refused(exp) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScanError, match="cast works on the whole model"):
        run_scan(
            _base(exp),
            ScanSpec(settings=(ScanSetting("cast", {"dtype": "float16"}),)),
            task=make_task(exp),
            device=CPU,
        )
    with pytest.raises(ScanError, match="needs a task"):
        run_scan(_base(exp), ScanSpec(settings=(PRUNE,)), task=None, device=CPU)


def test_a_scan_is_stored_once_complete_and_reused(exp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = ScanSpec(settings=(PRUNE, INT4))
    with LineageStore.open(tmp_path) as store:
        first, reused = scan_experiment(exp, store, spec, device="cpu")
        assert not reused
        again, reused = scan_experiment(exp, store, spec, device="cpu")
        assert reused and again.to_json() == first.to_json()
        assert ScanResult.from_json(first.to_json()).to_json() == first.to_json()
        (rec,) = list_scans(store)
        assert rec.experiment_file == "exp.bonsai.yaml"
        assert get_scan(store, experiment_scan_fingerprint(exp, store, spec)) is not None
        # another scan of the same file is another record
        scan_experiment(exp, store, ScanSpec(settings=(PRUNE,)), device="cpu")
        assert len(list_scans(store)) == 2


def test_a_cancelled_scan_leaves_no_record(exp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from modelbonsai.ops.registry import Cancelled

    calls = {"n": 0}

    def cancel_on_second() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with LineageStore.open(tmp_path) as store:
        with pytest.raises(Cancelled):
            scan_experiment(exp, store, ScanSpec(settings=(PRUNE,)), device="cpu", cancelled=cancel_on_second)
        assert list_scans(store) == []


def test_spearman_has_exact_values() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
