"""Chunked / streamed weight statistics give the same numbers as one unchunked pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelbonsai.compare import stats as S
from modelbonsai.compare.control import CompareError
from modelbonsai.compare.sources import FunctionSource, SafetensorsSource
from modelbonsai.compare.weights import compare_weights

EXACT = (
    "n",
    "finite",
    "zeros_base",
    "zeros_other",
    "zeros_both",
    "nan_base",
    "nan_other",
    "inf_base",
    "inf_other",
)
SUMS = ("sum_b2", "sum_o2", "sum_bo", "sum_d2")


def _pair(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, generator=g)
    o = b + 0.01 * torch.randn(n, generator=g)
    b[b.abs() < 0.05] = 0.0
    o[o.abs() < 0.08] = 0.0
    o[-1] = 7.5  # the largest difference sits in the ragged last chunk
    return b, o


def _assert_same(a: S.PairStats, b: S.PairStats) -> None:
    for k in EXACT:
        assert getattr(a, k) == getattr(b, k), k
    for k in SUMS:  # float32 partial sums per chunk, float64 across chunks
        assert getattr(a, k) == pytest.approx(getattr(b, k), rel=1e-6), k
    assert a.max_abs_diff == b.max_abs_diff
    np.testing.assert_array_equal(a.rel_hist, b.rel_hist)  # same sample whatever the chunking
    assert (a.rel_unchanged, a.rel_from_zero, a.rel_under, a.rel_over) == (
        b.rel_unchanged, b.rel_from_zero, b.rel_under, b.rel_over,
    )  # fmt: skip


@pytest.mark.parametrize("n", [100_003, 5_000, 1])
@pytest.mark.parametrize("chunk", [1000, 4096, 1 << 16])
def test_chunk_boundaries_do_not_change_results(n: int, chunk: int) -> None:
    b, o = _pair(n)
    whole = S.pair_stats(b, o, chunk=1 << 30, values=True)
    part = S.pair_stats(b, o, chunk=chunk, values=True)
    _assert_same(part, whole)
    assert part.values is not None and whole.values is not None
    np.testing.assert_array_equal(part.values["base"], whole.values["base"])
    np.testing.assert_array_equal(part.values["other"], whole.values["other"])
    assert part.max_abs_diff == pytest.approx(float((o.double() - b.double()).abs().max()), rel=1e-6)


def test_streamed_sample_is_the_documented_sample() -> None:
    b, o = _pair(200_001)
    sampler = S._Sampler(b.numel(), S.HIST_SAMPLE)
    for start in range(0, b.numel(), 4096):
        sampler.add(start, b.numpy()[start : start + 4096], o.numpy()[start : start + 4096])
    want, weight = S.sample_elements(b, S.HIST_SAMPLE)
    np.testing.assert_array_equal(sampler.base, want.numpy())
    assert sampler.weight == weight


def test_nonfinite_values_in_a_middle_chunk() -> None:
    b, o = _pair(10_000, seed=1)
    o[4095:4098] = float("nan")  # straddles the 4096 boundary
    b[5000] = float("inf")
    part = S.pair_stats(b, o, chunk=4096)
    whole = S.pair_stats(b, o, chunk=1 << 20)
    _assert_same(part, whole)
    assert (part.nan_other, part.inf_base, part.finite) == (3, 1, 10_000 - 4)


def test_safetensors_reader_matches_get_for_every_float_dtype(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    tensors = {
        "f32": torch.randn(33, 7, generator=g),
        "f16": torch.randn(33, 7, generator=g).half(),
        "bf16": torch.randn(33, 7, generator=g).bfloat16(),
        "f64": torch.randn(33, 7, generator=g).double(),
        "i64": torch.arange(12),
    }
    save_file(tensors, str(tmp_path / "w.safetensors"))
    src = SafetensorsSource(tmp_path / "w.safetensors")
    assert src.reader("i64") is None  # not a float: the whole-tensor path reports it
    for name in ("f32", "f16", "bf16", "f64"):
        read = src.reader(name)
        assert read is not None
        want = tensors[name].float().reshape(-1).numpy()
        np.testing.assert_array_equal(read(0, want.size), want)
        np.testing.assert_array_equal(read(50, 101), want[50:101])


def test_streamed_comparison_equals_whole_tensor_comparison(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(4)
    base = {"a.weight": torch.randn(300, 70, generator=g), "a.bias": torch.randn(70, generator=g)}
    other = {k: v + 0.02 * torch.randn(v.shape, generator=g) for k, v in base.items()}
    other["a.weight"][:10] = 0.0
    save_file(base, str(tmp_path / "b.safetensors"))
    save_file(other, str(tmp_path / "o.safetensors"))
    reads: list[str] = []

    def read(name: str) -> torch.Tensor:
        reads.append(name)
        return other[name]

    def read_range(name: str, start: int, stop: int) -> np.ndarray:
        return other[name].reshape(-1).numpy()[start:stop]

    shapes = {k: tuple(v.shape) for k, v in other.items()}
    streamed = compare_weights(
        SafetensorsSource(tmp_path / "b.safetensors"), {"o": FunctionSource(shapes, read, read_range)}
    )["o"]
    assert reads == []  # never materialised
    whole = compare_weights(
        FunctionSource(shapes, lambda n: base[n]), {"o": FunctionSource(shapes, lambda n: other[n])}
    )["o"]
    for name in base:
        s, w = streamed.tensor(name), whole.tensor(name)
        assert s.status == w.status == "ok"
        assert s.stats is not None and w.stats is not None
        _assert_same(s.stats, w.stats)
    assert streamed.tensor("a.weight").stats.metrics()["zero_only_other"] == 700  # type: ignore[union-attr]


def test_metrics_are_plain_python_numbers() -> None:
    """numpy scalars would change the msgpack/JSON the language server sends."""
    b, o = _pair(70_000)
    b[5] = float("nan")
    for st in (S.pair_stats(b, o, values=True), S.pair_stats(b[10:], o[10:], values=True)):
        m = st.metrics()
        for key, v in m.items():
            if key == "rel_change":
                assert all(type(x) is float for x in v.values()), v
            else:
                assert type(v) in (int, float, bool, type(None)), (key, type(v))
        assert st.values is not None and type(st.values["range"]) is float


def test_safetensors_file_damaged_after_opening_is_a_compare_error(tmp_path: Path) -> None:
    f = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3)}, str(f))
    src = SafetensorsSource(f)
    f.write_bytes(b"\xff" * 4)  # replaced by something that is not safetensors
    with pytest.raises(CompareError, match=r"cannot read .*w\.safetensors as safetensors: not a readable"):
        src.reader("a")
