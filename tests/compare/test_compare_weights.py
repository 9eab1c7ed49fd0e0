"""Weight comparison: per-tensor results, exact roll-up, masks, structured alignment, mismatches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbonsai import wire
from modelbonsai.compare.control import Cancelled, Control
from modelbonsai.compare.sources import FunctionSource, ModuleSource, SafetensorsSource
from modelbonsai.compare.weights import compare_weights


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8)),
        nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)),
    )


def test_rollup_and_wire_round_trip() -> None:
    base = _net()
    other = _net()
    other.load_state_dict(base.state_dict())
    with torch.no_grad():
        other[0][0].weight.add_(0.1 * torch.randn_like(other[0][0].weight))
    res = compare_weights(ModuleSource(base), {"o": ModuleSource(other)})["o"]
    assert res.tensor("0.0.weight").stats.rel_l2 > 0.05  # type: ignore[union-attr,operator]
    assert res.tensor("0.2.weight").stats.metrics()["identical"]  # type: ignore[union-attr]
    # roll-up: block 0 == its four tensors concatenated
    ws = ["0.0.weight", "0.0.bias", "0.2.weight", "0.2.bias"]
    b = torch.cat([base.state_dict()[n].reshape(-1) for n in ws]).double()
    o = torch.cat([other.state_dict()[n].reshape(-1) for n in ws]).double()
    want = float((o - b).norm() / b.norm())
    node = res.node("0")
    assert node.stats.rel_l2 == pytest.approx(want, rel=1e-6) and node.params == b.numel()
    assert res.node("").params == sum(p.numel() for p in base.parameters())
    assert {n.path for n in res.tree} >= {"", "0", "0.0", "1", "1.1"}
    kind, meta, tensors = res.wire()
    pages = wire.paginate(kind, meta, tensors)
    back = wire.join_pages(pages)
    assert back.meta["tree"][0]["path"] == ""
    assert back.tensors["rel_hist"].shape == (len(meta["tensors"]), 40)


def test_mask_overlap_on_known_masks() -> None:
    w = torch.randn(10, 10) + 5.0  # no accidental zeros
    base_mask = torch.zeros(10, 10, dtype=torch.bool)
    base_mask[:3] = True  # 30 zeros in base
    other_mask = torch.zeros(10, 10, dtype=torch.bool)
    other_mask[2:6] = True  # 40 zeros in other; rows 2 overlap -> 10 both
    b, o = w.masked_fill(base_mask, 0.0), w.masked_fill(other_mask, 0.0)
    src = lambda t: FunctionSource({"w": (10, 10)}, lambda n: t)  # noqa: E731
    m = compare_weights(src(b), {"o": src(o)})["o"].tensor("w").stats.metrics()  # type: ignore[union-attr]
    assert (m["zero_only_base"], m["zero_only_other"], m["zero_both"]) == (20, 30, 10)
    assert m["sparsity_base"] == pytest.approx(0.3) and m["sparsity_other"] == pytest.approx(0.4)


def _pruned_pair(scale: float) -> tuple[nn.Module, nn.Module, list[int], dict[str, dict[int, list[int]]]]:
    """(base, structurally pruned copy keeping hidden units `keep`, keep, its kept indices); the
    second layer's kept weights are multiplied by `scale`."""
    base = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
    keep = [0, 2, 3, 7, 9]
    pruned = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    with torch.no_grad():
        pruned[0].weight.copy_(base[0].weight[keep])
        pruned[0].bias.copy_(base[0].bias[keep])
        pruned[2].weight.copy_(base[2].weight[:, keep] * scale)
        pruned[2].bias.copy_(base[2].bias)
    return base, pruned, keep, {"0.weight": {0: keep}, "0.bias": {0: keep}, "2.weight": {1: keep}}


def test_structured_prune_alignment_through_kept_indices() -> None:
    base, pruned, keep, kept = _pruned_pair(1.1)  # a real change after alignment
    res = compare_weights(ModuleSource(base), {"p": ModuleSource(pruned)}, kept_indices={"p": kept})["p"]
    drop = [i for i in range(10) if i not in keep]
    w0 = res.tensor("0.weight")
    assert w0.status == "ok" and w0.removed == {0: 5}
    assert w0.kept_stats is not None and w0.kept_stats.metrics()["identical"]  # kept rows untouched
    # in the base's layout the removed rows are zeros: error, sparsity and "zero only in other"
    b0 = base[0].weight.detach().double()
    assert w0.stats.rel_l2 == pytest.approx(float(b0[drop].norm() / b0.norm()), rel=1e-6)  # type: ignore[union-attr]
    m0 = w0.stats.metrics()  # type: ignore[union-attr]
    assert m0["sparsity_other"] == pytest.approx(0.5) and m0["zero_only_other"] == 5 * 6 and m0["n"] == 60
    assert w0.to_json()["kept_metrics"]["identical"] and w0.to_json()["removed_indices"] == {"0": drop}
    w2 = res.tensor("2.weight")
    assert w2.status == "ok" and w2.kept_stats.rel_l2 == pytest.approx(0.1, rel=1e-5)  # type: ignore[union-attr]
    b2 = base[2].weight.detach().double()
    expect = float(((b2[:, keep] * 0.1).norm() ** 2 + b2[:, drop].norm() ** 2).sqrt() / b2.norm())
    assert w2.stats.rel_l2 == pytest.approx(expect, rel=1e-5)  # type: ignore[union-attr]
    # the roll-up sees the removed weights too: the model is not "identical"
    assert not res.node("").stats.metrics()["identical"] and res.node("").params == 60 + 10 + 40 + 4
    # without the kept indices, the same pair is a mismatch rather than a score
    res2 = compare_weights(ModuleSource(base), {"p": ModuleSource(pruned)})["p"]
    assert res2.tensor("0.weight").status == "mismatch" and "shape" in res2.tensor("0.weight").message
    assert res2.node("").not_compared == 3


def test_kept_and_removed_indices_per_dim_on_the_wire() -> None:
    base, pruned, _, kept = _pruned_pair(1.0)
    res = compare_weights(ModuleSource(base), {"p": ModuleSource(pruned)}, kept_indices={"p": kept})["p"]
    kind, meta, tensors = res.wire()
    back = wire.decode_result(wire.encode_result(kind, meta, tensors))
    by_name = {t["name"]: t for t in back.meta["tensors"]}
    assert by_name["0.weight"]["removed"] == {"0": 5}
    assert by_name["0.weight"]["kept_indices"] == {"0": [0, 2, 3, 7, 9]}
    assert by_name["0.weight"]["removed_indices"] == {"0": [1, 4, 5, 6, 8]}
    assert by_name["0.bias"]["removed_indices"] == {"0": [1, 4, 5, 6, 8]}
    assert by_name["2.weight"]["removed"] == {"1": 5}
    assert by_name["2.weight"]["removed_indices"] == {"1": [1, 4, 5, 6, 8]}
    # an unpruned tensor carries none of these fields
    assert "removed_indices" not in by_name["2.bias"] and "kept_indices" not in by_name["2.bias"]


def test_layout_mismatch_and_missing() -> None:
    w = torch.randn(6, 4)
    sq = torch.randn(8, 8)
    base = FunctionSource(
        {"a": (6, 4), "sq": (8, 8), "gone": (3,)}, {"a": w, "sq": sq, "gone": torch.ones(3)}.__getitem__
    )
    other = FunctionSource(
        {"a": (4, 6), "sq": (8, 8), "new": (2,)},
        {"a": w.T.contiguous(), "sq": sq.T.contiguous(), "new": torch.ones(2)}.__getitem__,
    )
    res = compare_weights(base, {"o": other})["o"]
    assert res.tensor("a").status == "mismatch" and "transposed" in res.tensor("a").message
    assert res.tensor("sq").status == "mismatch" and "transposed" in res.tensor("sq").message
    assert res.tensor("gone").status == "missing_in_other"
    assert res.tensor("new").status == "extra_in_other"


def test_streams_from_safetensors_and_counts_nan(tmp_path: Path) -> None:
    base = {f"layer{i}.weight": torch.randn(32, 16) for i in range(3)}
    other = {k: v.half() for k, v in base.items()}  # float16 copy: small, real error
    other["layer1.weight"] = other["layer1.weight"].clone()
    other["layer1.weight"][0, :4] = float("nan")
    save_file(base, str(tmp_path / "b.safetensors"))
    save_file(other, str(tmp_path / "o.safetensors"))
    res = compare_weights(
        SafetensorsSource(tmp_path / "b.safetensors"), {"o": SafetensorsSource(tmp_path / "o.safetensors")}
    )["o"]
    m = res.tensor("layer1.weight").stats.metrics()  # type: ignore[union-attr]
    assert m["nan_other"] == 4 and m["nan_base"] == 0
    assert res.node("").stats.nan_other == 4
    ref = (other["layer0.weight"].double() - base["layer0.weight"].double()).norm() / base[
        "layer0.weight"
    ].double().norm()
    assert res.tensor("layer0.weight").stats.rel_l2 == pytest.approx(float(ref), rel=1e-5)  # type: ignore[union-attr]
    assert 40 < res.tensor("layer0.weight").stats.sqnr_db < 90  # type: ignore[union-attr,operator]


def test_progress_and_cancel() -> None:
    seen: list[float] = []
    src = ModuleSource(_net())
    compare_weights(src, {"o": ModuleSource(_net())}, control=Control(lambda f, m: seen.append(f)))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        compare_weights(src, {"o": src}, control=Control(cancelled=lambda: True))


def test_many_others_read_base_once() -> None:
    reads: list[str] = []
    t = {"w": torch.randn(5, 5)}

    def read(n: str) -> torch.Tensor:
        reads.append(n)
        return t[n]

    base = FunctionSource({"w": (5, 5)}, read)
    others = {f"m{i}": FunctionSource({"w": (5, 5)}, lambda n, i=i: t[n] * (1 + i)) for i in range(3)}
    res = compare_weights(base, others)
    assert reads == ["w"]
    assert [round(res[f"m{i}"].tensor("w").stats.rel_l2, 6) for i in range(3)] == [0.0, 1.0, 2.0]  # type: ignore[union-attr]
    assert np.isclose(res["m1"].tensor("w").stats.cosine, 1.0)  # type: ignore[union-attr]


def test_user_mistakes_are_clear_messages(tmp_path: Path) -> None:
    from modelbonsai.compare.activations import ActivationOptions
    from modelbonsai.compare.control import CompareError

    with pytest.raises(CompareError, match=r"not found: .*nope\.safetensors"):
        SafetensorsSource(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CompareError, match=r"cannot read .*bad\.safetensors"):
        SafetensorsSource(tmp_path / "bad.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match=r"no \.safetensors files"):
        SafetensorsSource(tmp_path / "empty")
    with pytest.raises(CompareError, match="at least one other"):
        compare_weights(ModuleSource(_net()), {})
    with pytest.raises(CompareError, match="mode must be"):
        ActivationOptions(mode="sideways").check()


def test_bfloat16_checkpoint_is_widened(tmp_path: Path) -> None:
    w = torch.randn(8, 8)
    save_file({"w": w}, str(tmp_path / "b.safetensors"))
    save_file({"w": w.bfloat16()}, str(tmp_path / "o.safetensors"))
    src = SafetensorsSource(tmp_path / "o.safetensors")
    assert src.get("w").dtype == torch.float32
    res = compare_weights(SafetensorsSource(tmp_path / "b.safetensors"), {"o": src})["o"]
    m = res.tensor("w").stats.metrics()  # type: ignore[union-attr]
    assert 40 < m["sqnr_db"] < 60  # bfloat16 keeps 8 bits of mantissa: ~50 dB


def test_tensors_in_parallel_give_the_sequential_result_in_order() -> None:
    """With torch allowed several threads, tensors are compared concurrently: same results, same
    order, same roll-up as one at a time."""
    g = torch.Generator().manual_seed(3)
    shapes = {f"l{i}.weight": (64 + i, 32) for i in range(7)}
    b = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    o = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in b.items()}
    base, other = FunctionSource(shapes, b.__getitem__), FunctionSource(shapes, o.__getitem__)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compare_weights(base, {"o": other})["o"]
        torch.set_num_threads(3)
        many = compare_weights(base, {"o": other})["o"]
    finally:
        torch.set_num_threads(before)
    assert [t.name for t in many.tensors] == [t.name for t in one.tensors] == list(shapes)
    assert [t.to_json() for t in many.tensors] == [t.to_json() for t in one.tensors]
    assert many.node("").stats.metrics() == one.node("").stats.metrics()


def test_cancel_with_tensors_in_flight_skips_the_queued_ones() -> None:
    shapes = {f"l{i}.weight": (16, 8) for i in range(40)}
    read: list[str] = []

    def get(name: str) -> torch.Tensor:
        read.append(name)
        return torch.ones(shapes[name])

    steps = [0]

    def cancelled() -> bool:
        steps[0] += 1
        return steps[0] > 3

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(Cancelled):
            compare_weights(FunctionSource(shapes, get), {"o": FunctionSource(shapes, get)},
                            control=Control(cancelled=cancelled))  # fmt: skip
    finally:
        torch.set_num_threads(before)
    # the 3 compared, plus at most the 4 queued ahead (twice the largest tensor per worker; 2
    # sides each): not the 40
    assert len(read) <= 2 * (3 + 4)


def test_other_workers_keep_busy_while_a_large_tensor_runs() -> None:
    """The tensor collected next may be far larger than the rest (an embedding): the small ones
    behind it are compared meanwhile, not only the few a count-based queue would hold."""
    shapes = {"embed.weight": (64, 64), **{f"l{i}.weight": (4, 4) for i in range(30)}}
    small_done = threading.Event()
    read: list[str] = []
    lock = threading.Lock()

    def get(name: str) -> torch.Tensor:
        if name == "embed.weight":
            small_done.wait(timeout=20)  # held until the small ones are through (or gives up)
        with lock:
            read.append(name)
            if sum(n != "embed.weight" for n in read) == 2 * 30:  # both sides of every small one
                small_done.set()
        return torch.ones(shapes[name])

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = compare_weights(FunctionSource(shapes, get), {"o": FunctionSource(shapes, get)})["o"]
    finally:
        torch.set_num_threads(before)
    assert small_done.is_set() and read.index("embed.weight") > 30
    assert [t.name for t in res.tensors] == list(shapes)  # still in order


def test_streamed_square_matrix_transposed_is_a_mismatch() -> None:
    """Streamed pairs (sources with range readers) get the transposed-layout check too, without
    reading either side whole through torch; a square matrix that merely differs stays scored."""
    g = torch.Generator().manual_seed(3)
    sq, other_sq = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    base_t = {"sq": sq, "diff": sq}
    other_t = {"sq": sq.T.contiguous(), "diff": other_sq}

    def ranged(tensors: dict[str, torch.Tensor]) -> FunctionSource:
        flat = {k: v.reshape(-1).numpy() for k, v in tensors.items()}
        return FunctionSource(
            {k: tuple(v.shape) for k, v in tensors.items()},
            tensors.__getitem__,
            read_range=lambda name, a, b: flat[name][a:b],
        )

    res = compare_weights(ranged(base_t), {"o": ranged(other_t)})["o"]
    assert res.tensor("sq").status == "mismatch" and "transposed" in res.tensor("sq").message
    assert res.tensor("diff").status == "ok"


def test_transposed_check_skipped_only_where_it_cannot_flag() -> None:
    """The norm bound skips reading a square pair again only where the transposed check could
    not flag it: a matrix pruned to 2% (norms far apart) is scored without it, and the verdicts
    are those of the full check."""
    from modelbonsai.compare import stats as S
    from modelbonsai.compare import weights as W

    g = torch.Generator().manual_seed(4)
    b = torch.randn(48, 48, generator=g)
    pruned = torch.where(b.abs() > 2.3, b, torch.zeros_like(b))  # ~2% kept
    cases = {
        "pruned": pruned,
        "pruned_t": pruned.T.contiguous(),
        "t": b.T.contiguous(),
        "other": torch.randn(48, 48, generator=g),
    }
    for name, o in cases.items():
        st = S.pair_stats(b, o)
        full = W._looks_transposed(b, o, st) if W._transpose_suspect(tuple(b.shape), st) else False
        # the verdict with the bound equals the full check's (computed here without the bound)
        t_rel = S.pair_stats(b.T.contiguous(), o, hist_sample=0).rel_l2
        assert t_rel is not None and st.rel_l2 is not None
        assert full == (st.rel_l2 >= 0.5 and t_rel < 0.25 * st.rel_l2), name
    st = S.pair_stats(b, pruned)
    assert st.rel_l2 is not None and st.rel_l2 >= 0.5 and not W._transpose_suspect(tuple(b.shape), st)
