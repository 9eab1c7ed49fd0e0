"""Ranged reads of stored tensors: every form, ragged boundaries, bit-identical to the full decode."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelbonsai.artifacts import ArtifactError, open_stored, read_tensor, save_artifact
from modelbonsai.ops.quantize import QuantEncoding, quantize_rtn
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

CTX = OpContext(device=torch.device("cpu"), seed=0)


class Holder(nn.Module):
    """Parameters with chosen names (state-dict names `p.<name>`)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.p = nn.Module()
        for name, t in tensors.items():
            self.p.register_parameter(name, nn.Parameter(t, requires_grad=False))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _quantized(shape: tuple[int, ...], bits: int, symmetric: bool, gran: str, axis: int = 0,
               group: int | None = None, prune: float = 0.0, dtype: torch.dtype = torch.float32,
               seed: int = 0) -> tuple[torch.Tensor, QuantEncoding]:  # fmt: skip
    w = torch.randn(shape, generator=_gen(seed))
    if prune:
        w[torch.rand(shape, generator=_gen(seed + 1)) < prune] = 0.0
    enc = quantize_rtn(w, bits, symmetric, gran, group if gran == "group" else None, axis, op="t", layer="t")
    return enc.dequantize(enc.encode(w), dtype), enc


def _ranges(n: int) -> list[tuple[int, int]]:
    """Sequential ragged chunks, then jumps back and forth (the offset tables, not carried state)."""
    out, start = [], 0
    for size in [1, 63, 1000, 7, 4096, 333] * 100:
        if start >= n:
            break
        out.append((start, min(n, start + size)))
        start = min(n, start + size)
    out += [(n - 1, n), (0, n), (n // 2, n // 2 + 97), (3, 5), (n // 3, n), (0, 1)]
    return [(a, min(b, n)) for a, b in out if a < min(b, n)]


def _assert_ranges_match(folder: Path, name: str) -> None:
    st = open_stored(folder)
    full = read_tensor(folder, name).float().reshape(-1).numpy()
    read = st.range_reader(name)
    assert read is not None, name
    for a, b in _ranges(full.size):
        got = np.array(read(a, b))
        assert got.dtype == np.float32 and got.shape == (b - a,), (name, a, b)
        # bit patterns, so -0.0 vs 0.0 or a NaN payload would show
        np.testing.assert_array_equal(
            got.view(np.uint32), full[a:b].view(np.uint32), err_msg=f"{name} [{a},{b})"
        )


def _save(
    tmp_path: Path, tensors: dict[str, torch.Tensor], encodings: dict[str, QuantEncoding]
) -> dict[str, str]:
    cm = CompressedModel(Holder(tensors))
    cm.encodings = {f"p.{k}": v for k, v in encodings.items()}
    return save_artifact(cm, tmp_path).forms


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_packed_every_granularity_and_axis(tmp_path: Path, bits: int, symmetric: bool) -> None:
    specs = {
        "tensor": dict(shape=(37, 53), gran="tensor"),
        "channel": dict(shape=(41, 29), gran="channel"),
        "group": dict(shape=(23, 96), gran="group", group=32),
        "channel_axis1": dict(shape=(30, 19), gran="channel", axis=1),  # transformers Conv1D layout
        "group_axis1": dict(shape=(48, 7), gran="group", axis=1, group=16),
        "conv": dict(shape=(6, 5, 3, 3), gran="group", group=15),
        "vector": dict(shape=(101,), gran="channel"),
        "fp16": dict(shape=(33, 40), gran="group", group=8, dtype=torch.float16),
        "bf16": dict(shape=(17, 32), gran="channel", dtype=torch.bfloat16),
    }
    tensors, encs = {}, {}
    for i, (name, spec) in enumerate(specs.items()):
        tensors[name], encs[name] = _quantized(bits=bits, symmetric=symmetric, seed=i, **spec)  # type: ignore[arg-type]
    forms = _save(tmp_path, tensors, encs)
    # (2-bit grids round many weights to 0: some tensors then store as packed-bitmask)
    assert "packed" in forms.values() and set(forms.values()) <= {"packed", "packed-bitmask"}, forms
    for name in tensors:
        _assert_ranges_match(tmp_path, f"p.{name}")


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_packed_bitmask(tmp_path: Path, bits: int) -> None:
    tensors, encs = {}, {}
    tensors["g"], encs["g"] = _quantized((40, 64), bits, False, "group", group=16, prune=0.85)
    tensors["c1"], encs["c1"] = _quantized((64, 33), bits, True, "channel", axis=1, prune=0.9, seed=3)
    forms = _save(tmp_path, tensors, encs)
    assert set(forms.values()) == {"packed-bitmask"}, forms
    for name in tensors:
        _assert_ranges_match(tmp_path, f"p.{name}")


def test_dense_bitmask_csr_and_float_dtypes(tmp_path: Path) -> None:
    g = _gen(7)
    half_zero = torch.randn(77, 131, generator=g)
    half_zero[torch.rand(77, 131, generator=g) < 0.6] = 0.0
    very_sparse = torch.randn(50, 2000, generator=g)
    very_sparse[torch.rand(50, 2000, generator=g) < 0.995] = 0.0
    very_sparse[3] = 0.0  # an empty row
    tensors = {
        "dense": torch.randn(129, 65, generator=g),
        "dense16": torch.randn(33, 17, generator=g).half(),
        "densebf": torch.randn(12, 70, generator=g).bfloat16(),
        "dense64": torch.randn(5, 9, generator=g).double(),
        "bitmask": half_zero,
        "bitmask16": half_zero[:40].clone().half(),
        "csr": very_sparse,
        "csr_bf": very_sparse[:20].clone().bfloat16(),
    }
    forms = _save(tmp_path, tensors, {})
    assert (
        forms["p.bitmask"] == forms["p.bitmask16"] == "bitmask"
        and forms["p.csr"] == forms["p.csr_bf"] == "csr"
    )
    assert forms["p.dense"] == "dense"
    for name in tensors:
        _assert_ranges_match(tmp_path, f"p.{name}")
    st = open_stored(tmp_path)
    whole = st.range_reader("p.dense")
    assert getattr(whole, "array", None) is not None  # float32 dense: a view of the mapped file


def test_qint8_dense_and_sparse_and_alias(tmp_path: Path) -> None:
    def mlp() -> nn.Module:
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(96, 80), nn.ReLU(), nn.Linear(80, 40), nn.ReLU(), nn.Linear(40, 40))

    m = mlp()
    with torch.no_grad():
        m[0].weight[torch.rand_like(m[0].weight) < 0.9] = 0.0
    op = get_op("quantize.dynamic")
    assert op is not None
    cm = op.fn(CompressedModel(m), op.resolve({"exclude": ["4.*"]}), CTX)
    forms = save_artifact(cm, tmp_path).forms
    assert forms["0.weight"] == forms["2.weight"] == "qint8"
    for name in ("0.weight", "2.weight", "0.bias", "4.weight"):
        _assert_ranges_match(tmp_path, name)

    tied = CompressedModel(Holder({"a": torch.randn(30, 7, generator=_gen(2))}))
    tied.module.p.b = tied.module.p.a  # tied weights are stored once, as an alias
    assert save_artifact(tied, tmp_path / "tied").forms["p.b"] == "alias"
    _assert_ranges_match(tmp_path / "tied", "p.b")


def test_manifest_is_parsed_once_and_reread_when_the_artifact_changes(tmp_path: Path) -> None:
    _save(tmp_path, {"w": torch.randn(10, 10, generator=_gen(0))}, {})
    first = open_stored(tmp_path)
    assert open_stored(tmp_path) is first  # cached: no second parse
    time.sleep(0.01)
    _save(tmp_path, {"w": torch.ones(4, 4), "v": torch.zeros(3)}, {})
    os.utime(tmp_path / "manifest.json")  # same-second rewrites still differ in mtime_ns / size
    second = open_stored(tmp_path)
    assert second is not first and second.shape("p.w") == (4, 4)
    assert np.array_equal(second.range_reader("p.w")(0, 16), np.ones(16, np.float32))  # type: ignore[misc]


def test_errors_name_the_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"manifest\.json"):
        open_stored(tmp_path / "nothing")
    _save(tmp_path, {"w": torch.randn(4, 4, generator=_gen(0))}, {})
    with pytest.raises(KeyError, match=r"no tensor 'p\.nope'"):
        open_stored(tmp_path).range_reader("p.nope")
    assert open_stored(tmp_path).range_reader("p.w") is not None
