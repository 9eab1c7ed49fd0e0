"""The msgpack envelope: round trips, paging, and the shared fixtures (also read by TypeScript)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch

from modelbonsai import wire

FIXTURES = Path(__file__).parent / "fixtures" / "wire"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("wire_fixture_gen", FIXTURES / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _expect_value(v: Any) -> float | int | bool:
    if isinstance(v, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, None) or int(v)
    return v


def test_round_trip_dtypes_and_zero_copy() -> None:
    tensors = {
        "u8": np.array([1, 2, 3], dtype=np.uint8),
        "f32": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
        "i64": np.array([-(2**63), 2**62], dtype=np.int64),
        "b": np.array([True, False]),
        "f64be": np.arange(4, dtype=">f8"),
        "t16": torch.tensor([1.5, -2.25], dtype=torch.float16),
        "tbf": torch.tensor([[1.0, 3.0]], dtype=torch.bfloat16),
        "empty": np.zeros((0, 7), dtype=np.float32),
    }
    msg = wire.encode_result("weights", {"n": np.int64(3), "names": ("a", "b")}, tensors)
    res = wire.decode_result(msg)
    assert res.kind == "weights" and res.meta == {"n": 3, "names": ["a", "b"]}
    for name in ("u8", "f32", "i64", "b"):
        np.testing.assert_array_equal(res.tensors[name], tensors[name])
        assert res.tensors[name].dtype == tensors[name].dtype
    np.testing.assert_array_equal(res.tensors["f64be"], np.arange(4, dtype=np.float64))
    assert res.tensors["t16"].dtype == np.float32 and res.orig_dtypes["t16"] == "float16"
    np.testing.assert_array_equal(res.tensors["t16"], [1.5, -2.25])
    assert res.orig_dtypes["tbf"] == "bfloat16" and res.tensors["tbf"].tolist() == [[1.0, 3.0]]
    assert res.tensors["empty"].shape == (0, 7)
    # zero-copy: the array is a read-only view over the message's bytes
    assert not res.tensors["f32"].flags.writeable and res.tensors["f32"].base is not None


def test_little_endian_on_the_wire() -> None:
    raw = msgpack.unpackb(wire.encode_result("k", {}, {"x": np.array([1], dtype=">i4")}), raw=False)
    assert raw["tensors"]["x"]["data"] == b"\x01\x00\x00\x00"


def test_bad_messages_are_named() -> None:
    with pytest.raises(wire.WireError, match="msgpack"):
        wire.decode_result(b"\xc1garbage")
    bad = msgpack.packb(
        {
            "v": 1,
            "kind": "k",
            "meta": {},
            "tensors": {"x": {"dtype": "float32", "shape": [3], "data": b"\0" * 8}},
        }
    )
    with pytest.raises(wire.WireError, match="'x'"):
        wire.decode_result(bad)
    with pytest.raises(wire.WireError, match="complex"):
        wire.encode_result("k", {}, {"c": np.zeros(2, dtype=np.complex64)})


@pytest.mark.parametrize("page_bytes", [20_000, 64 * 1024, wire.PAGE_BYTES])
def test_paginate_and_join(page_bytes: int) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "a": rng.standard_normal((100, 33)).astype(np.float32),
        "tiny": np.arange(3, dtype=np.uint8),
        "wide": rng.standard_normal((2, 9000)).astype(np.float32),  # rows larger than a small page
        "v": rng.standard_normal(20000),
        "e": np.zeros((0,), dtype=np.int32),
    }
    pages = wire.paginate("k", {"m": 1}, tensors, page_bytes=page_bytes)
    assert all(len(p) <= page_bytes for p in pages)
    if page_bytes < 100_000:
        assert len(pages) > 3
    res = wire.join_pages(list(reversed(pages)))
    assert res.meta == {"m": 1}
    for k, v in tensors.items():
        np.testing.assert_array_equal(res.tensors[k], v)
    # row alignment where a row fits: pieces of "a" start on row boundaries
    for p in pages:
        piece = msgpack.unpackb(p, raw=False)["tensors"].get("a")
        if piece and "range" in piece:
            assert piece["range"][0] % 33 == 0


def test_join_detects_missing_page() -> None:
    pages = wire.paginate("k", {}, {"a": np.zeros(30000, dtype=np.float32)}, page_bytes=40_000)
    with pytest.raises(wire.WireError, match="pages"):
        wire.join_pages(pages[:-1])


def _decode_fixture(side: dict[str, Any]) -> wire.Result:
    blobs = [(FIXTURES / f).read_bytes() for f in side["pages"]]
    return wire.decode_result(blobs[0]) if len(blobs) == 1 else wire.join_pages(blobs)


@pytest.mark.parametrize("sidecar", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_matches_sidecar(sidecar: Path) -> None:
    side = json.loads(sidecar.read_text())
    res = _decode_fixture(side)
    assert res.kind == side["kind"] and res.meta == side["meta"]
    assert set(res.tensors) == set(side["tensors"])
    for name, want in side["tensors"].items():
        got = res.tensors[name]
        assert got.dtype.name == want["dtype"] and list(got.shape) == want["shape"], name
        assert res.orig_dtypes.get(name) == want.get("orig_dtype")
        first = got.reshape(-1)[:8].tolist()
        for g, w in zip(first, want["first"], strict=True):
            w = _expect_value(w)
            assert (math.isnan(g) and math.isnan(w)) if isinstance(w, float) and math.isnan(w) else g == w
        flat = got.reshape(-1)
        if got.dtype.kind == "f":
            f = flat.astype(np.float64)
            assert math.isclose(float(f[np.isfinite(f)].sum()), want["sum"], rel_tol=1e-12, abs_tol=1e-12)
            assert int(np.isnan(f).sum()) == want["nan"] and int(np.isposinf(f).sum()) == want["posinf"]
        elif got.dtype.name in ("int64", "uint64"):
            assert str(sum(int(v) for v in flat.tolist())) == want["sum"]
        else:
            assert int(flat.astype(np.int64).sum()) == want["sum"]


def test_fixtures_cover_the_hard_cases() -> None:
    sides = {p.stem: json.loads(p.read_text()) for p in FIXTURES.glob("*.json")}
    dtypes = {t["dtype"] for s in sides.values() for t in s["tensors"].values()}
    assert {"uint8", "float32", "int64", "bool", "float64"} <= dtypes
    assert any(len(s["pages"]) > 1 for s in sides.values())
    assert any(t.get("orig_dtype") == "float16" for s in sides.values() for t in s["tensors"].values())
    assert any(0 in t["shape"] for s in sides.values() for t in s["tensors"].values())
    assert any(t.get("nan", 0) and t.get("posinf", 0) for s in sides.values() for t in s["tensors"].values())
    # at least one float32 buffer starts at an offset that is not a multiple of 4 in its message
    raw = (FIXTURES / "basic.msgpack").read_bytes()
    data = msgpack.unpackb(raw, raw=False)["tensors"]["values"]["data"]
    assert raw.find(data) % 4 != 0


def test_fixtures_are_up_to_date(tmp_path: Path) -> None:
    gen = _load_generator()
    for written in gen.build(tmp_path):
        assert written.read_bytes() == (FIXTURES / written.name).read_bytes(), (
            f"{written.name} differs; run python tests/fixtures/wire/generate.py"
        )
