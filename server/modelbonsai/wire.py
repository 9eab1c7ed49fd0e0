"""The one msgpack envelope for numeric results (server -> extension -> webview).

Envelope (a msgpack map)::

    {"v": 1, "kind": str, "meta": {...}, "tensors": {name: tensor}, "page"?: {...}}

Tensor (a msgpack map)::

    {"dtype": str, "shape": [int, ...], "data": bin, "orig_dtype"?: str, "range"?: [start, stop]}

- `data` is the C-order element buffer, **little-endian**, of exactly `prod(shape) * itemsize`
  bytes (or `(stop - start) * itemsize` for a page piece, see below).
- dtypes on the wire: bool (1 byte per element, 0/1), uint8, int8, uint16, int16, uint32, int32,
  int64, uint64, float32, float64. float16 and bfloat16 are **widened to float32** and carry
  `"orig_dtype": "float16" | "bfloat16"` so a view can still say what was stored; widening is
  exact. (Every JS typed array exists for float32; none does for bfloat16.)
- Decoders must not assume `data` is aligned inside the message (msgpack has no alignment);
  the TypeScript side copies to an aligned buffer when the offset is not a multiple of itemsize.

Paging: :func:`paginate` splits one result into self-contained envelopes of at most
`page_bytes` each. Every page has `"page": {"index": i, "count": n}`; `meta` travels in page 0
(others carry `{}`). A tensor too big for one page is split into pieces over a flat element
range: each piece repeats the full `shape` and `dtype` and adds `"range": [start, stop]` (element
offsets into the flattened tensor; boundaries fall on whole rows of axis 0 when a row fits in a
page). :func:`join_pages` reassembles. Small tensors are packed whole into the current page.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

WIRE_VERSION = 1
PAGE_BYTES = 4 * 1024 * 1024
#: Room left in a page for the envelope itself (keys, shapes, small meta).
_PAGE_OVERHEAD = 16 * 1024

_WIRE_DTYPES = {
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "int64",
    "uint64",
    "float32",
    "float64",
}
_WIDENED = {"float16", "bfloat16"}
_LITTLE = np.little_endian


class WireError(ValueError):
    """A message that does not follow the envelope (names what is wrong)."""


@dataclass
class Result:
    """A decoded envelope: `tensors` are read-only numpy views over the message bytes."""

    kind: str
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]
    orig_dtypes: dict[str, str] = field(default_factory=dict)


def _to_numpy(x: Any) -> tuple[np.ndarray, str | None]:
    """A numpy array on the CPU plus the original dtype name when it had to be widened."""
    # A torch tensor exists only once torch is imported: encoding numpy results (a weights-only
    # comparison) must not import it (the CLI's start-up, tests/cli/test_startup_imports.py).
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            return t.float().contiguous().numpy(), str(t.dtype).removeprefix("torch.")
        return t.contiguous().numpy(), None
    a = np.asarray(x)
    name = a.dtype.name
    if name == "float16":
        return a.astype(np.float32), "float16"
    if name == "bfloat16":  # ml_dtypes arrays
        return a.astype(np.float32), "bfloat16"
    return a, None


def encode_tensor(x: Any) -> dict[str, Any]:
    """`{"dtype", "shape", "data"}` for a numpy array or torch tensor (see module doc)."""
    a, orig = _to_numpy(x)
    if a.dtype.name not in _WIRE_DTYPES:
        raise WireError(
            f"cannot put dtype {a.dtype} on the wire (allowed: {sorted(_WIRE_DTYPES | _WIDENED)})"
        )
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not _LITTLE):
        a = a.astype(a.dtype.newbyteorder("<"))
    if not a.flags.c_contiguous:  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        a = a.copy(order="C")
    out: dict[str, Any] = {"dtype": a.dtype.name, "shape": [int(s) for s in a.shape], "data": a.tobytes()}
    if orig:
        out["orig_dtype"] = orig
    return out


def decode_tensor(obj: Mapping[str, Any], *, name: str = "?") -> np.ndarray:
    """The numpy view of one encoded tensor (zero-copy over `data`; read-only)."""
    dtype, shape, data = _check_tensor(obj, name)
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    expected = math.prod(shape)
    if arr.size != expected:
        raise WireError(f"tensor '{name}': data holds {arr.size} elements, shape {shape} needs {expected}")
    return arr.reshape(shape)


def _check_tensor(obj: Mapping[str, Any], name: str) -> tuple[str, list[int], bytes]:
    if not isinstance(obj, Mapping) or not {"dtype", "shape", "data"} <= set(obj):
        raise WireError(f"tensor '{name}' must be a map with dtype, shape and data")
    dtype = obj["dtype"]
    if dtype not in _WIRE_DTYPES:
        raise WireError(f"tensor '{name}' has unknown dtype {dtype!r}")
    shape = [int(s) for s in obj["shape"]]
    data = obj["data"]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"tensor '{name}': data must be binary")
    itemsize = np.dtype(dtype).itemsize
    if len(data) % itemsize:
        raise WireError(f"tensor '{name}': {len(data)} bytes is not a multiple of {dtype} ({itemsize} bytes)")
    return str(dtype), shape, data if isinstance(data, bytes) else bytes(data)


def _plain(obj: Any) -> Any:
    """msgpack `default` hook: numpy scalars/arrays and tuples inside meta become plain values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in a result's meta")


def _pack(env: dict[str, Any]) -> bytes:
    return msgpack.packb(env, use_bin_type=True, default=_plain)


def encode_result(kind: str, meta: Mapping[str, Any], tensors: Mapping[str, Any]) -> bytes:
    """One envelope as msgpack bytes. `tensors` values are numpy arrays or torch tensors."""
    env = {
        "v": WIRE_VERSION,
        "kind": kind,
        "meta": dict(meta),
        "tensors": {str(k): encode_tensor(v) for k, v in tensors.items()},
    }
    return _pack(env)


def _unpack(message: bytes) -> dict[str, Any]:
    try:
        env = msgpack.unpackb(message, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise WireError(f"not a msgpack result: {e}") from e
    if not isinstance(env, dict) or env.get("v") != WIRE_VERSION:
        raise WireError(f"not a version-{WIRE_VERSION} result envelope")
    for key in ("kind", "meta", "tensors"):
        if key not in env:
            raise WireError(f"result envelope lacks '{key}'")
    return env


def decode_result(message: bytes) -> Result:
    """Decode one (unpaged) envelope; tensors are zero-copy numpy views."""
    env = _unpack(message)
    if "page" in env and env["page"].get("count", 1) != 1:
        raise WireError("this is one page of several; use join_pages")
    tensors: dict[str, np.ndarray] = {}
    orig: dict[str, str] = {}
    for name, obj in env["tensors"].items():
        if "range" in obj:
            raise WireError(f"tensor '{name}' is a page piece; use join_pages")
        tensors[name] = decode_tensor(obj, name=name)
        if "orig_dtype" in obj:
            orig[name] = str(obj["orig_dtype"])
    return Result(kind=str(env["kind"]), meta=dict(env["meta"]), tensors=tensors, orig_dtypes=orig)


def paginate(
    kind: str,
    meta: Mapping[str, Any],
    tensors: Mapping[str, Any],
    page_bytes: int = PAGE_BYTES,
) -> list[bytes]:
    """Split a result into envelopes of at most `page_bytes` each (see module doc)."""
    budget = page_bytes - _PAGE_OVERHEAD
    if budget < 64:
        raise WireError(f"page_bytes={page_bytes} is too small (needs > {_PAGE_OVERHEAD + 64})")
    meta_size = len(_pack({"meta": dict(meta)}))
    if meta_size > budget:
        raise WireError(
            f"result meta is {meta_size} bytes, more than a page ({page_bytes}); move arrays to tensors"
        )

    pages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    used = meta_size  # page 0 carries meta

    def flush() -> None:
        nonlocal current, used
        pages.append(current)
        current, used = {}, 0

    for name, value in tensors.items():
        enc = encode_tensor(value)
        data: bytes = enc["data"]
        if len(data) <= budget - used:
            current[str(name)] = enc
            used += len(data)
            continue
        if len(data) <= budget and current:
            flush()
            current[str(name)] = enc
            used += len(data)
            continue
        # Split: element ranges, aligned to whole rows of axis 0 when a row fits in a page.
        itemsize = np.dtype(enc["dtype"]).itemsize
        total = len(data) // itemsize
        shape = enc["shape"]
        row = math.prod(shape[1:]) if len(shape) > 1 else 1
        start = 0
        while start < total:
            room = (budget - used) // itemsize
            step = (room // row) * row if row <= budget // itemsize else room
            if step <= 0:
                flush()
                continue
            stop = min(total, start + step)
            piece = {"dtype": enc["dtype"], "shape": shape, "data": data[start * itemsize : stop * itemsize]}
            piece["range"] = [start, stop]
            if "orig_dtype" in enc:
                piece["orig_dtype"] = enc["orig_dtype"]
            current[str(name)] = piece
            used += (stop - start) * itemsize
            start = stop
            if start < total:
                flush()
    if current or not pages:
        pages.append(current)

    n = len(pages)
    out = []
    for i, page_tensors in enumerate(pages):
        env = {
            "v": WIRE_VERSION,
            "kind": kind,
            "meta": dict(meta) if i == 0 else {},
            "tensors": page_tensors,
            "page": {"index": i, "count": n},
        }
        out.append(_pack(env))
    return out


def join_pages(pages: Sequence[bytes]) -> Result:
    """Reassemble the pages of one result (any order). Whole tensors stay zero-copy."""
    if not pages:
        raise WireError("no pages to join")
    envs = [_unpack(p) for p in pages]
    count = {int(e.get("page", {}).get("count", 1)) for e in envs}
    if len(count) != 1 or count.pop() != len(envs):
        raise WireError(f"got {len(envs)} pages, the pages say otherwise")
    envs.sort(key=lambda e: int(e.get("page", {}).get("index", 0)))
    if [int(e.get("page", {}).get("index", 0)) for e in envs] != list(range(len(envs))):
        raise WireError("page indices are not 0..count-1")
    kinds = {e["kind"] for e in envs}
    if len(kinds) != 1:
        raise WireError(f"pages of different results: {sorted(kinds)}")

    tensors: dict[str, np.ndarray] = {}
    orig: dict[str, str] = {}
    # name -> (flat buffer, elements covered so far, shape)
    partial: dict[str, tuple[np.ndarray, int, list[int]]] = {}
    for env in envs:
        for name, obj in env["tensors"].items():
            if "orig_dtype" in obj:
                orig[name] = str(obj["orig_dtype"])
            if "range" not in obj:
                tensors[name] = decode_tensor(obj, name=name)
                continue
            dtype, shape, data = _check_tensor(obj, name)
            start, stop = (int(v) for v in obj["range"])
            piece = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
            if piece.size != stop - start:
                raise WireError(f"tensor '{name}': piece [{start}, {stop}) holds {piece.size} elements")
            if name not in partial:
                flat = np.empty(math.prod(shape), dtype=np.dtype(dtype).newbyteorder("<"))
                partial[name] = (flat, 0, shape)
            buf, covered, full_shape = partial[name]
            if full_shape != shape or not 0 <= start <= stop <= buf.shape[0]:
                raise WireError(f"tensor '{name}': piece [{start}, {stop}) does not fit shape {full_shape}")
            buf[start:stop] = piece
            partial[name] = (buf, covered + (stop - start), full_shape)
    for name, (buf, covered, shape) in partial.items():
        if covered != buf.shape[0]:
            raise WireError(f"tensor '{name}': pages cover {covered} of {buf.shape[0]} elements")
        tensors[name] = buf.reshape(shape)
    return Result(kind=str(envs[0]["kind"]), meta=dict(envs[0]["meta"]), tensors=tensors, orig_dtypes=orig)
