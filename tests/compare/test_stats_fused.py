"""The fused kernels give exactly what the chunked path gives, and every sum matches float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.artifacts import open_stored, save_artifact
from modelbonsai.compare import kernels as K
from modelbonsai.compare import stats as S
from modelbonsai.ops.quantize import quantize_rtn
from modelbonsai.ops.registry import CompressedModel

FIELDS = ("n", "finite", "sum_b2", "sum_o2", "sum_bo", "sum_d2", "max_abs_diff", "zeros_base", "zeros_other",
          "zeros_both", "nan_base", "nan_other", "inf_base", "inf_other", "rel_unchanged", "rel_from_zero",
          "rel_under", "rel_over")  # fmt: skip


def _stored_quantized(
    tmp_path: Path, shape: tuple[int, int], bits: int, gran: str, seed: int
) -> tuple[np.ndarray, Path]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.05
    w[torch.rand(shape, generator=g) < 0.05] = 0.0
    enc = quantize_rtn(w, bits, bits != 5, gran, 16 if gran == "group" else None, 0, op="t", layer="w")
    m = nn.Module()
    m.register_parameter("w", nn.Parameter(enc.dequantize(enc.encode(w)), requires_grad=False))
    cm = CompressedModel(m)
    cm.encodings = {"w": enc}
    folder = tmp_path / f"a{seed}"
    assert save_artifact(cm, folder).forms["w"] == "packed"
    return w.reshape(-1).numpy().copy(), folder


def _same(a: S.PairStats, b: S.PairStats) -> None:
    for f in FIELDS:
        assert getattr(a, f) == getattr(b, f), f
    np.testing.assert_array_equal(a.rel_hist, b.rel_hist)
    assert a.values is not None and b.values is not None
    np.testing.assert_array_equal(a.values["base"], b.values["base"])
    np.testing.assert_array_equal(a.values["other"], b.values["other"])


@pytest.mark.parametrize(("shape", "bits", "gran"), [
    ((37, 41), 8, "channel"),  # under HIST_SAMPLE: every element is sampled (ragged tail included)
    ((300, 208), 4, "group"),  # strided sample, ragged last chunk
    ((129, 1000), 5, "channel"),  # 5-bit codes straddling bytes
])  # fmt: skip
def test_fused_dequant_equals_chunked_path_both_ways(
    tmp_path: Path, shape: tuple[int, int], bits: int, gran: str
) -> None:
    x, folder = _stored_quantized(tmp_path, shape, bits, gran, seed=bits)
    x[5] = np.nan  # a NaN block goes through the exact path in both
    x[-3] = np.inf
    read = open_stored(folder).range_reader("w")
    assert read is not None and getattr(read, "packed", None) is not None
    n = x.size

    def plain(start: int, stop: int) -> np.ndarray:  # the same reader without its packed spec
        return read(start, stop)

    for chunk in (S.CHUNK, 4096):
        fused = S.stream_pair_stats(S.ArrayReader(x), read, n, chunk=chunk, values=True)
        chunked = S.stream_pair_stats(S.ArrayReader(x), plain, n, chunk=chunk, values=True)
        _same(fused, chunked)
        fused_r = S.stream_pair_stats(read, S.ArrayReader(x), n, values=True)  # quantized side as base
        chunked_r = S.stream_pair_stats(plain, S.ArrayReader(x), n, values=True)
        _same(fused_r, chunked_r)
    assert (fused.nan_base, fused.inf_base, fused.finite) == (1, 1, n - 2)
    # against float64
    q = read(0, n).astype(np.float64)
    keep = np.isfinite(x)
    b, o = x[keep].astype(np.float64), q[keep]
    assert fused.sum_b2 == pytest.approx(b @ b, rel=1e-6)
    assert fused.sum_o2 == pytest.approx(o @ o, rel=1e-6)
    assert fused.sum_bo == pytest.approx(b @ o, rel=1e-6)
    assert fused.sum_d2 == pytest.approx((o - b) @ (o - b), rel=1e-5)
    assert fused.max_abs_diff == pytest.approx(np.abs(o - b).max(), rel=1e-6)
    assert fused.zeros_other == int((q == 0).sum())


def test_kernel_sums_are_float64_accurate_and_blocks_fall_back() -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal(50_000).astype(np.float32)
    o = (b + 1e-3 * rng.standard_normal(50_000)).astype(np.float32)
    o[:2048] = b[:2048] * np.float32(1 + 2**-20)  # differences of a few ulps
    b[30_000:31_000] = np.float32(1e-30)  # squares underflow float32: the block is redone in float64
    o[30_000:31_000] = np.float32(2e-30)
    b[40_000] = np.float32(3e30)  # its square overflows float32: also redone
    facc, iacc = np.zeros(5), np.zeros(8, np.int64)
    K.pair_sums(b, o, facc, iacc)
    b64, o64 = b.astype(np.float64), o.astype(np.float64)
    d = o64 - b64
    for got, want in zip(facc[:4], (b64 @ b64, o64 @ o64, b64 @ o64, d @ d), strict=True):
        assert got == pytest.approx(want, rel=1e-7)
    assert facc[4] == np.abs(o - b).max()
    assert iacc[0] == 50_000 and iacc[1] == int((b == 0).sum())
    tiny = np.zeros(5)
    K.pair_sums(b[30_000:31_000], o[30_000:31_000], tiny, np.zeros(8, np.int64))
    assert tiny[0] == pytest.approx(1000 * 1e-60, rel=1e-6) and tiny[3] == pytest.approx(
        1000 * 1e-60, rel=1e-6
    )


def test_relative_change_bins_follow_the_float64_edges() -> None:
    rng = np.random.default_rng(3)
    ratio = 10 ** rng.uniform(-9, 3, 20_000)
    ratio[:41] = S.REL_EDGES_RATIO  # exactly on every edge
    b = np.ones(ratio.size, np.float32)
    o = (1 + ratio).astype(np.float32)
    r = np.abs((o - b).astype(np.float32).astype(np.float64))  # what the kernel bins
    st = S.PairStats()
    hist, side = np.zeros(S.REL_BINS), np.zeros(4)  # side: unchanged, from zero, under, over
    K.rel_change_hist(b, o, S.REL_EDGES_RATIO, S._REL_TABLE, S._REL_KEY_LO, hist, side)
    S._add_rel(st, hist, side, 1.0)
    inside = (r >= S.REL_EDGES_RATIO[0]) & (r <= S.REL_EDGES_RATIO[-1])
    want = np.bincount(np.minimum(np.searchsorted(S.REL_EDGES_RATIO, r[inside], side="right") - 1, S.REL_BINS - 1),
                       minlength=S.REL_BINS)  # fmt: skip
    np.testing.assert_array_equal(st.rel_hist, want)
    assert st.rel_unchanged == int((r == 0).sum()) > 0  # 1 + a tiny ratio rounds back to 1
    assert st.rel_under == int(((r > 0) & (r < S.REL_EDGES_RATIO[0])).sum())  # (float32: none, 1 ulp > 1e-8)
    assert st.rel_over == int((r > S.REL_EDGES_RATIO[-1]).sum()) > 0


def test_kernels_are_compiled_at_import() -> None:
    for fn in (K.pair_sums, K.pair_sums_packed, K.rel_change_hist, K.uniform_hist, K.take_blocks):
        assert fn.signatures, fn  # explicit signatures: nothing left to compile on first use
    assert K.warm() >= 0.0


def test_numba_cache_falls_back_to_a_temp_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only install run without a writable home still imports (numba would refuse)."""
    import tempfile

    from numba.core import caching, config

    from modelbonsai.artifacts import kernels as AK

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # type: ignore[attr-defined]

    class Nowhere:
        @classmethod
        def from_function(cls, py_func: object, py_file: str) -> None:
            return None

    monkeypatch.setattr(impl, "_locator_classes", [Nowhere])
    monkeypatch.setattr(config, "CACHE_DIR", "")
    AK.ensure_numba_cache(AK.__file__)
    assert config.CACHE_DIR.startswith(tempfile.gettempdir()) and "bonsai-numba-cache" in config.CACHE_DIR


def test_unaligned_float32_views_are_accepted() -> None:
    """A safetensors file from another writer may hold a float32 tensor at an odd offset."""
    raw = np.zeros(4 * 1001 + 1, np.uint8)
    a = raw[1:].view(np.float32)
    assert not a.flags.aligned
    a[:] = np.arange(1001, dtype=np.float32)
    st = S.stream_pair_stats(S.ArrayReader(a), S.ArrayReader(a * 2), 1001)
    # float32 sums within a block: their rounding depends on the vector width the kernel got
    # (8 lanes with AVX2 round more than 16 with AVX-512), so a float32-level tolerance
    assert st.sum_bo == pytest.approx(2 * float((np.arange(1001.0) ** 2).sum()), rel=1e-5)
    assert st.max_abs_diff == 1000.0


@pytest.mark.parametrize(
    ("chan_first", "positions", "channels"),
    [
        (False, 5000, 6),  # narrow rows: pooled in a second pass; more positions than float32 keeps exact
        (True, 5000, 6),  # a channel's positions in pieces of a block
        (False, 600, 300),  # several positions per block
        (False, 500, 2500),  # a position's channels in pieces of a block
        (True, 600, 300),  # several channels per block
    ],
)
def test_row_kernel_sums_pools_and_samples_each_row(chan_first: bool, positions: int, channels: int) -> None:
    g = np.random.default_rng(3)
    rows = 3
    x = (g.standard_normal((rows, positions, channels)) + 100).astype(np.float32)
    y = x + g.standard_normal(x.shape).astype(np.float32) * 1e-3
    y[1, 7, 2] = np.nan
    lay = (lambda a: a.transpose(0, 2, 1)) if chan_first else (lambda a: a)
    b = np.ascontiguousarray(lay(x)).reshape(rows, -1)
    o = np.ascontiguousarray(lay(y)).reshape(rows, -1)
    f, i = np.zeros((rows, 5)), np.zeros((rows, 8), np.int64)
    pb, po = np.empty((rows, channels), np.float32), np.empty((rows, channels), np.float32)
    idx = np.array([[0, positions - 1], [7, 3], [123, 456]], np.int64)  # CKA positions per instance
    rb, ro = np.empty((rows * 2, channels), np.float32), np.empty((rows * 2, channels), np.float32)
    step = 7  # the histogram sample: SAMPLE_BLOCK blocks 0, 7, 14, ... of the flat pair
    picked = len(range(0, b.size // K.SAMPLE_BLOCK, step)) * K.SAMPLE_BLOCK
    hb, ho = np.empty(picked, np.float32), np.empty(picked, np.float32)
    K.row_pair_sums(b, o, f, i, positions, chan_first, pb, po, idx, rb, ro, step, hb, ho)
    blocks = b.reshape(-1)[: b.size // K.SAMPLE_BLOCK * K.SAMPLE_BLOCK].reshape(-1, K.SAMPLE_BLOCK)
    np.testing.assert_array_equal(hb, blocks[::step].reshape(-1))
    np.testing.assert_array_equal(
        ho, o.reshape(-1)[: blocks.size].reshape(-1, K.SAMPLE_BLOCK)[::step].reshape(-1)
    )
    np.testing.assert_array_equal(rb, x[np.arange(rows)[:, None], idx].reshape(-1, channels))
    np.testing.assert_array_equal(ro, y[np.arange(rows)[:, None], idx].reshape(-1, channels))
    for r in range(rows):  # the flat kernel's sums (blocked along the layout's rows: rounding differs)
        fr, ir = np.zeros(5), np.zeros(8, np.int64)
        K.pair_sums(b[r], o[r], fr, ir)
        np.testing.assert_allclose(f[r], fr, rtol=1e-6)
        assert f[r, K.F_MAXABS] == fr[K.F_MAXABS]
        np.testing.assert_array_equal(i[r], ir)
    # float32 partial sums per block, then float64: a few float32 ulps (a running float32 sum
    # over 5,000 positions near 100 would be off by about 1e-4)
    np.testing.assert_allclose(pb, x.astype(np.float64).mean(1), rtol=3e-7)
    assert np.isnan(po[1, 2]) and np.isfinite(np.delete(po.reshape(-1), 1 * channels + 2)).all()
    np.testing.assert_allclose(po[0], y[0].astype(np.float64).mean(0), rtol=3e-7)
    assert i[1, K.I_NANO] == 1 and i[0, K.I_NANO] == 0


@pytest.mark.parametrize("chan_first", [False, True])
@pytest.mark.parametrize("width", [63, 64, 65, 341, 1023, 1024, 1025, 2049])
def test_row_kernel_at_block_edges_with_zeros_and_inf(chan_first: bool, width: int) -> None:
    # the layout's rows around the narrow-row cut, whole blocks and pieces of a block
    g = np.random.default_rng(width)
    rows, other_dim = 2, 37
    positions, channels = (width, other_dim) if chan_first else (other_dim, width)
    x = g.standard_normal((rows, positions, channels)).astype(np.float32)
    y = x + g.standard_normal(x.shape).astype(np.float32) * 0.1
    x[0, 3, :5] = 0.0
    y[0, 3, 2:7] = 0.0
    y[1, -1, -1] = np.inf
    lay = (lambda a: a.transpose(0, 2, 1)) if chan_first else (lambda a: a)
    b = np.ascontiguousarray(lay(x)).reshape(rows, -1)
    o = np.ascontiguousarray(lay(y)).reshape(rows, -1)
    f, i = np.zeros((rows, 5)), np.zeros((rows, 8), np.int64)
    pb, po = np.empty((rows, channels), np.float32), np.empty((rows, channels), np.float32)
    none2, none1 = np.empty((0, channels), np.float32), np.empty(0, np.float32)
    K.row_pair_sums(b, o, f, i, positions, chan_first, pb, po, np.empty((rows, 0), np.int64), none2, none2, 0,
                    none1, none1)  # fmt: skip
    for r in range(rows):
        bd, od = b[r].astype(np.float64), o[r].astype(np.float64)
        fin = np.isfinite(bd) & np.isfinite(od)
        np.testing.assert_allclose(f[r, K.F_BB], (bd[fin] ** 2).sum(), rtol=1e-6)
        np.testing.assert_allclose(f[r, K.F_BO], (bd[fin] * od[fin]).sum(), rtol=1e-6)
        np.testing.assert_allclose(f[r, K.F_DD], ((od - bd)[fin] ** 2).sum(), rtol=1e-5)
        assert i[r, K.I_FINITE] == fin.sum()
        assert i[r, K.I_ZB] == (bd == 0).sum() and i[r, K.I_ZO] == (od == 0).sum()
        assert i[r, K.I_ZBOTH] == ((bd == 0) & (od == 0)).sum()
        assert i[r, K.I_INFO] == np.isinf(od).sum()
    np.testing.assert_allclose(pb, x.astype(np.float64).mean(1), rtol=1e-5, atol=1e-6)
    assert np.isinf(po[1, -1]) and np.isfinite(np.delete(po.reshape(-1), po.size - 1)).all()


def _stored_forms(tmp_path: Path) -> tuple[dict[str, np.ndarray], Path, dict[str, str]]:
    """One artifact holding a tensor of each form a decode spec serves (odd shapes, ragged last
    blocks), and each tensor's original float32 values as a base to compare it with."""
    g = torch.Generator().manual_seed(11)
    tensors: dict[str, torch.Tensor] = {}
    encs = {}
    for name, shape, density in [("bitmask", (300, 211), 0.5), ("csr", (97, 1500), 0.004)]:
        t = torch.randn(shape, generator=g)
        t[torch.rand(shape, generator=g) >= density] = 0.0
        tensors[name] = t
    for name, shape, axis, gran, prune, bits in [
        ("packed_rows", (129, 80), 0, "group", 0.0, 4),
        ("packed_cols", (96, 131), 1, "group", 0.0, 3),
        ("packed_bitmask", (200, 64), 0, "channel", 0.9, 8),
        ("packed_bitmask_cols", (64, 301), 1, "channel", 0.9, 2),
    ]:
        w = torch.randn(shape, generator=g)
        w[torch.rand(shape, generator=g) < prune] = 0.0
        enc = quantize_rtn(w, bits, False, gran, 16 if gran == "group" else None, axis, op="t", layer="t")
        tensors[name] = enc.dequantize(enc.encode(w))
        encs[name] = enc
    m = nn.Module()
    for name, t in tensors.items():
        m.register_parameter(name, nn.Parameter(t, requires_grad=False))
    cm = CompressedModel(m)
    cm.encodings = dict(encs)
    folder = tmp_path / "forms"
    forms = save_artifact(cm, folder).forms
    bases = {}
    for name, t in tensors.items():
        b = (t + 0.01 * torch.randn(t.shape, generator=g)).reshape(-1).numpy().copy()
        bases[name] = b
    return bases, folder, forms


def test_in_kernel_decode_equals_the_chunked_path_for_every_form(tmp_path: Path) -> None:
    """pair_sums_specs (each stored form decoded in the statistics kernel) against the chunk loop
    over the same readers: identical statistics and histograms, the stored side on either side,
    and two stored sides against each other."""
    bases, folder, forms = _stored_forms(tmp_path)
    assert set(forms.values()) == {"bitmask", "csr", "packed", "packed-bitmask"}, forms
    st = open_stored(folder)
    for name, x in bases.items():
        x[7] = np.nan
        read = st.range_reader(name)
        assert read is not None and getattr(read, "spec", None) is not None, name
        n = x.size

        def plain(start: int, stop: int, read: S.RangeReader = read) -> np.ndarray:  # no spec: the chunk loop
            return read(start, stop)

        fused = S.stream_pair_stats(S.ArrayReader(x), read, n, values=True)
        _same(fused, S.stream_pair_stats(S.ArrayReader(x), plain, n, values=True))
        _same(
            S.stream_pair_stats(read, S.ArrayReader(x), n, values=True),
            S.stream_pair_stats(plain, S.ArrayReader(x), n, values=True),
        )
        assert fused.nan_base == 1 and fused.zeros_other == int((read(0, n) == 0).sum())
    # two stored sides (a pruned model against a quantized one): both decoded in the kernel
    a, b = st.range_reader("packed_bitmask"), st.range_reader("bitmask")
    assert a is not None and b is not None
    n = 200 * 64

    def pa(s: int, e: int) -> np.ndarray:
        return a(s, e)

    def pb(s: int, e: int) -> np.ndarray:
        return b(s, e)

    _same(S.stream_pair_stats(a, b, n, values=True), S.stream_pair_stats(pa, pb, n, values=True))


def test_cache_of_the_comparison_kernels_depends_on_the_decode_kernels() -> None:
    """The decode kernels (artifacts/kernels.py) are compiled into the comparison's: numba's cache
    stamp of these includes that file, so editing it recompiles them instead of loading stale code."""
    import os

    from modelbonsai.artifacts import kernels as AK

    stamp = K.pair_sums_specs._cache._impl.locator.get_source_stamp()
    st = os.stat(AK.__file__)
    assert stamp[1] == ((st.st_mtime, st.st_size),)
