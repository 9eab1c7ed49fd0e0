"""An artifact opened for reading: whole tensors, or a flat element range of one, decoded.

:func:`open_stored` parses and checks the manifest once per artifact (cached while the files are
unchanged: same size and modification time) and memory-maps the tensors file once.
:meth:`StoredTensors.range_reader` gives a function `(start, stop) -> float32 array` over the
flat elements of one tensor that decodes only what the range needs, for every stored form:

- ``dense``: float32 is a view of the mapped file (no copy); float16/bfloat16/float64 widen (or
  narrow) chunk by chunk;
- ``bitmask`` / ``packed-bitmask``: the values (codes) before `start` are counted from the mask
  (a small table of per-64K-element counts, and sequential reads carry the offset on);
- ``csr``: the non-zeros in [start, stop) are found by binary search in the rows it touches;
- ``packed``: the codes of the range are unpacked and dequantized with their scales and zero
  points (per tensor / channel / group, any channel axis);
- ``qint8``: int8 values (dense or bitmask) dequantized per tensor or channel;
- ``palette``: the LUT indices of the range unpacked and looked up in their row's LUT (times the
  row's scale when there is one).

Results are bit-identical to the slice of the full decode (:func:`.forms.decode`), including
the rounding to a float16/bfloat16 tensor dtype. The returned array may be a scratch buffer that
the next call overwrites. A reader with an `array` attribute is a view of the whole flat tensor;
one with a `packed` attribute (:class:`PackedSpec`: float32 packed codes, scales along the flat
order) can be dequantized inside a consumer's own kernel, and one with a `spec` attribute (the
tuple of `kernels.SPEC`: bitmask, CSR, packed, packed-bitmask) decoded inside it by
`kernels.decode_range`, which these readers use themselves (no per-range position arrays).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import kernels as K
from .manifest import FLOAT_DTYPES, MANIFEST, SEP, TENSORS, ArtifactError, read_manifest

if TYPE_CHECKING:  # torch is imported where a whole tensor is decoded, not for streamed ranges
    import torch

    from .artifact import _Reader

RangeFn = Callable[[int, int], np.ndarray]

_NP = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_PREFIX_BLOCK = 1 << 16  # mask elements per entry of the set-bit count table


class FlatArray:
    """A range reader over a whole flat float32 array (a view of the mapped file)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]


def mmap_components(path: Path) -> dict[str, tuple[np.ndarray, str, tuple[int, ...]]]:
    """key -> (raw bytes as a uint8 view of a read-only mmap, safetensors dtype, shape)."""
    import json
    import struct

    try:
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
    except (OSError, struct.error, ValueError) as e:
        raise ArtifactError(path, f"not a readable safetensors file ({e})") from None
    start = 8 + header_len
    has_data = path.stat().st_size > start  # np.memmap refuses an empty mapping
    # a plain ndarray view: slicing an np.memmap subclass costs a Python hook per slice
    data = (
        np.memmap(path, dtype=np.uint8, mode="r", offset=start).view(np.ndarray)
        if has_data
        else np.empty(0, np.uint8)
    )
    out: dict[str, tuple[np.ndarray, str, tuple[int, ...]]] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out[key] = (data[begin:end], str(info["dtype"]), tuple(int(x) for x in info["shape"]))
    return out


class StoredTensors:
    """One artifact's tensors: names and shapes from the manifest, data from the mapped file."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = Path(folder)
        self.manifest = manifest
        self.path = self.folder / str(manifest.get("tensors_file", TENSORS))
        self._raw = mmap_components(self.path)
        self._reader: _Reader | None = None

    # -- listing ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.manifest["tensors"])

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(x) for x in self._entry(name)["shape"])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: self.shape(n) for n in self.names()}

    def _entry(self, name: str) -> dict[str, Any]:
        entries = self.manifest["tensors"]
        if name not in entries:
            raise KeyError(f"artifact {self.folder} has no tensor '{name}'")
        return dict(entries[name])

    # -- whole tensors ---------------------------------------------------------------------------
    def tensor(self, name: str) -> torch.Tensor:
        """The tensor decoded as the model held it (see forms.decode)."""
        from .artifact import _decode_entry, _Reader

        self._entry(name)
        with _LOCK:  # one for every read (tiles read tensor after tensor), made once across threads
            if self._reader is None:
                self._reader = _Reader(self.folder, self.manifest)
            reader = self._reader
        return _decode_entry(reader, self.manifest, name)

    # -- ranges ----------------------------------------------------------------------------------
    def component(self, key: str) -> np.ndarray:
        """A stored component as a flat typed numpy view of the mapped file."""
        if key not in self._raw:
            raise ArtifactError(self.path, f"has no tensor '{key}' (the manifest refers to it)")
        raw, dtype, _shape = self._raw[key]
        if dtype not in _NP:
            raise ArtifactError(self.path, f"tensor '{key}' has dtype {dtype}, which Bonsai does not store")
        return raw.view(_NP[dtype])

    def range_reader(self, name: str) -> RangeFn | None:
        """Flat float32 elements [start, stop) of `name`, decoded; None for a non-float tensor."""
        entry = self._entry(name)
        key = name
        while entry.get("form") == "alias":  # tied weights: read the entry that holds the data
            key = str(entry["of"])
            entry = {**self._entry(key), "shape": entry["shape"]}
        dtype = str(entry["dtype"])
        if dtype not in FLOAT_DTYPES:
            return None
        try:
            return self._make_reader(key, entry, dtype)
        except ArtifactError:
            raise
        except Exception as e:  # a manifest entry that does not fit its data
            raise ArtifactError(self.path, f"tensor '{name}' cannot be read by range ({e})") from None

    def _make_reader(self, key: str, entry: dict[str, Any], dtype: str) -> RangeFn:
        form = str(entry["form"])
        shape = tuple(int(x) for x in entry["shape"])
        if form == "dense":
            return dense_reader(self.component(key), self._raw[key][1])
        if form == "bitmask":
            mask, values = self.component(f"{key}{SEP}mask"), self.component(f"{key}{SEP}values")
            vdtype = self._raw[f"{key}{SEP}values"][1]
            if vdtype == "F32":
                return _SpecReader(_spec(K.BITMASK, mask=mask, values=values), _MaskIndex(mask))
            return _BitmaskReader(mask, _Widen(values, vdtype))
        if form == "csr":
            if self._raw[f"{key}{SEP}values"][1] == "F32":
                return _csr_spec_reader(self, key, shape)
            return _csr_reader(self, key, shape)
        if form in ("packed", "packed-bitmask"):
            return _packed_reader(self, key, entry, shape, dtype)
        if form == "qint8":
            return _qint8_reader(self, key, entry, shape)
        if form == "palette":
            return _palette_reader(self, key, entry, shape, dtype)
        raise ArtifactError(self.path, f"tensor '{key}' has unknown stored form '{form}'")


# -- cache -----------------------------------------------------------------------------------------
_CACHE: OrderedDict[str, tuple[tuple[int, ...], StoredTensors]] = OrderedDict()
_CACHE_SIZE = 16
_LOCK = threading.Lock()


def _stamp(folder: Path) -> tuple[int, ...]:
    out: list[int] = []
    for f in (MANIFEST, TENSORS):
        try:
            st = os.stat(folder / f)
        except OSError:
            return ()
        out += [st.st_size, st.st_mtime_ns, st.st_ino]
    return tuple(out)


def open_stored(folder: str | Path) -> StoredTensors:
    """The artifact at `folder`, opened once and cached while its files are unchanged."""
    folder = Path(folder)
    key = str(folder.resolve())
    stamp = _stamp(folder)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and stamp and hit[0] == stamp:
            _CACHE.move_to_end(key)
            return hit[1]
    stored = StoredTensors(folder, read_manifest(folder))  # ArtifactError when missing/corrupt
    with _LOCK:
        if stamp:
            _CACHE[key] = (stamp, stored)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return stored


# -- readers ---------------------------------------------------------------------------------------
class _Scratch:
    """A reused float32 buffer (readers return views of it)."""

    def __init__(self) -> None:
        self.buf = np.empty(0, np.float32)

    def get(self, n: int) -> np.ndarray:
        if self.buf.size < n:
            self.buf = np.empty(n, np.float32)
        return self.buf[:n]


class _Widen:
    """Slices of a stored float component as float32 (exact widening; float64 narrows as the
    comparison's whole-tensor path does)."""

    def __init__(self, values: np.ndarray, dtype: str):
        self.values, self.dtype = values, dtype
        self.scratch = _Scratch()

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return self.widen(self.values[start:stop])

    def widen(self, part: np.ndarray) -> np.ndarray:
        """Stored values (of this component's dtype) as float32."""
        if self.dtype == "F32":
            return part
        out = self.scratch.get(part.size)
        if self.dtype == "BF16":  # the 16 bits are the float32's high half
            np.left_shift(part, 16, out=out.view(np.uint32), dtype=np.uint32)
        else:
            np.copyto(out, part, casting="same_kind")
        return out


def dense_reader(values: np.ndarray, dtype: str) -> RangeFn:
    """Flat float32 ranges of a stored float component (`dtype` as safetensors names it): a view
    for F32, else widened (F64 narrowed) into a reused buffer. The safetensors source of the
    comparison reads plain weight files through it too."""
    if dtype == "F32":
        return FlatArray(values)
    return _Widen(values, dtype)


class _MaskIndex:
    """Where the stored values of a bitmask range begin: sequential reads carry the running
    offset on; a jump uses a table of set-bit counts per :data:`_PREFIX_BLOCK` elements."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.ascontiguousarray(mask)
        self._table: np.ndarray | None = None
        self._next = (0, 0)  # (element, values before it)
        self.positions = np.empty(0, np.int64)

    def offset(self, start: int) -> int:
        if self._next[0] == start:
            return self._next[1]
        if self._table is None:
            n_bits = self.mask.size * 8
            bounds = range(0, n_bits, _PREFIX_BLOCK)
            counts = [K.count_bits(self.mask, b, min(b + _PREFIX_BLOCK, n_bits)) for b in bounds]
            self._table = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        blk = start // _PREFIX_BLOCK
        return int(self._table[blk]) + int(K.count_bits(self.mask, blk * _PREFIX_BLOCK, start))

    def span(self, start: int, stop: int) -> tuple[int, np.ndarray]:
        """(values before start, offsets of the set bits in [start, stop) from start)."""
        off = self.offset(start)
        if self.positions.size < stop - start:
            self.positions = np.empty(stop - start, np.int64)
        k = int(K.scatter_positions(self.mask, start, stop, self.positions))
        self._next = (stop, off + k)
        return off, self.positions[:k]


class _BitmaskReader:
    """A bitmask tensor whose values are not float32: the stored values of the range are spread
    over it in a kernel (in their own dtype, no position array), then widened."""

    def __init__(self, mask: np.ndarray, values: _Widen):
        self.index = _MaskIndex(mask)
        self.values = values
        # numba has no float16: 16-bit values move as their bits (0 is +0.0 in every float dtype)
        self.bits = values.values.view(np.uint16) if values.values.itemsize == 2 else values.values
        self.raw = np.empty(0, self.bits.dtype)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        off = self.index.offset(start)
        if self.raw.size < stop - start:
            self.raw = np.empty(stop - start, self.bits.dtype)
        raw = self.raw[: stop - start]
        end = K.expand_mask(self.index.mask, start, self.bits, off, raw.dtype.type(0), raw)
        self.index._next = (stop, int(end))
        return self.values.widen(raw.view(self.values.values.dtype))


class _SpecReader:
    """A range reader that decodes through :func:`.kernels.decode_range`; its `spec` attribute
    (the stored tensor as the kernel's tuple) lets a consumer's kernel decode it in place. The
    decode state carries on between consecutive ranges; a jump finds it again (the mask's count
    table, the CSR row search)."""

    def __init__(
        self,
        spec: tuple[Any, ...],
        index: _MaskIndex | None = None,
        seek: Callable[[int], tuple[int, int]] | None = None,
        dtype: str = "float32",
    ):
        self.spec = spec
        self.index = index
        self.seek = seek
        self.dtype = dtype
        self.state = np.zeros(3, np.int64)
        self.at = 0  # the element the state describes
        self.scratch = _Scratch()
        self.codes = np.empty(0, np.uint8)
        self.stored = np.empty(0, np.uint8)
        #: set for a float32 packed tensor with a blocked scale layout (the older fused path)
        self.packed: PackedSpec | None = None

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if start != self.at:
            if self.index is not None:
                self.state[0] = self.index.offset(start)
            if self.seek is not None:
                self.state[1], self.state[2] = self.seek(start)
        n = stop - start
        if self.codes.size < n:
            self.codes = np.empty(n, np.uint8)
            self.stored = np.empty(n, np.uint8)
        out = self.scratch.get(n)
        K.decode_range(self.spec, start, stop, self.state, self.codes, self.stored, out)
        self.at = stop
        return _round_to(out, self.dtype)


_NO_U8 = np.empty(0, np.uint8)
_NO_F32 = np.empty(0, np.float32)
_NO_I64 = np.empty(0, np.int64)
_NO_I32 = np.empty(0, np.int32)
for _a in (_NO_U8, _NO_F32, _NO_I64, _NO_I32):
    _a.flags.writeable = False


def _ro(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A read-only C-contiguous view (a copy only when the dtype or layout differs): the kernel's
    spec type holds read-only arrays, as the views of the mapped file are."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _spec(
    kind: int,
    *,
    mask: np.ndarray = _NO_U8,
    values: np.ndarray = _NO_F32,
    packed: np.ndarray = _NO_U8,
    bits: int = 0,
    scales: np.ndarray = _NO_F32,
    zeros: np.ndarray = _NO_F32,
    a: int = 1,
    b: int = 1,
    c: int = 1,
    indptr: np.ndarray = _NO_I64,
    indices: np.ndarray = _NO_I32,
    cols: int = 0,
) -> tuple[Any, ...]:
    """The stored tensor as the decode kernels' tuple (see `kernels.SPEC`)."""
    return (
        kind,
        _ro(mask, np.uint8),
        _ro(values, np.float32),
        _ro(packed, np.uint8),
        int(bits),
        _ro(scales, np.float32),
        _ro(zeros, np.float32),
        int(a),
        int(b),
        int(c),
        _ro(indptr, np.int64),
        _ro(indices, np.int32),
        int(cols),
    )


def dense_spec(values: np.ndarray) -> tuple[Any, ...]:
    """A flat float32 array as a decode spec (read in place by the kernels)."""
    return _spec(K.DENSE, values=values)


def _csr_spec_reader(st: StoredTensors, key: str, shape: tuple[int, ...]) -> _SpecReader:
    indptr = st.component(f"{key}{SEP}indptr").astype(np.int64)  # rows + 1 entries: small
    indices = st.component(f"{key}{SEP}indices")
    values = st.component(f"{key}{SEP}values")
    rows = shape[0] if shape else 1
    numel = int(np.prod(shape)) if shape else 1
    cols = numel // max(rows, 1)
    if indptr.size != rows + 1:
        raise ArtifactError(st.path, f"tensor '{key}': CSR indptr has {indptr.size} entries for {rows} rows")

    def seek(flat: int) -> tuple[int, int]:
        """(first stored non-zero at or after flat element `flat`, the row to search it from)."""
        if flat >= numel:
            return int(indptr[-1]), max(rows - 1, 0)
        r, c = divmod(flat, max(cols, 1))
        lo, hi = int(indptr[r]), int(indptr[r + 1])
        return lo + int(np.searchsorted(indices[lo:hi], c)), r

    return _SpecReader(_spec(K.CSR, values=values, indptr=indptr, indices=indices, cols=cols), seek=seek)


def _csr_reader(st: StoredTensors, key: str, shape: tuple[int, ...]) -> RangeFn:
    indptr = st.component(f"{key}{SEP}indptr").astype(np.int64)  # rows + 1 entries: small
    indices = st.component(f"{key}{SEP}indices")
    values = _Widen(st.component(f"{key}{SEP}values"), st._raw[f"{key}{SEP}values"][1])
    rows = shape[0] if shape else 1
    numel = int(np.prod(shape)) if shape else 1
    cols = numel // max(rows, 1)
    if indptr.size != rows + 1:
        raise ArtifactError(st.path, f"tensor '{key}': CSR indptr has {indptr.size} entries for {rows} rows")
    scratch = _Scratch()

    def first_at(flat: int) -> int:
        """Index of the first stored non-zero at or after flat element `flat`."""
        if flat >= numel:
            return int(indptr[-1])
        r, c = divmod(flat, cols)
        lo, hi = int(indptr[r]), int(indptr[r + 1])
        return lo + int(np.searchsorted(indices[lo:hi], c))

    def read(start: int, stop: int) -> np.ndarray:
        out = scratch.get(stop - start)
        out.fill(0.0)
        lo, hi = first_at(start), first_at(stop)
        if hi > lo:
            row = np.searchsorted(indptr, np.arange(lo, hi), side="right") - 1
            flat = row * cols + indices[lo:hi] - start
            out[flat] = values(lo, hi)
        return out

    return read


def _scale_index(
    start: int, stop: int, shape: tuple[int, ...], axis: int, rows: int, groups: int
) -> np.ndarray:
    """Index into the flattened [rows, groups] scale grid of flat elements [start, stop), for
    the channel axis `axis` (rows = shape[axis]; columns are the other dims, flattened)."""
    i = np.arange(start, stop, dtype=np.int64)
    inner = int(np.prod(shape[axis + 1 :]))
    row = (i // inner) % rows
    pos = (i // (rows * inner)) * inner + i % inner
    cols = int(np.prod(shape)) // rows
    return row * groups + pos // (cols // groups)


def _round_to(out: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values rounded to the tensor's dtype (its manifest name) and widened back (as the
    decode's cast)."""
    if dtype in ("float32", "float64"):
        return out  # float64 holds the float32 result exactly; the comparison reads float32
    import torch

    t = torch.from_numpy(out)
    t.copy_(t.to(getattr(torch, dtype)))
    return out


class _Dequant:
    """(code - zero) * scale over a flat range, for the layout of one encoding."""

    def __init__(
        self, shape: tuple[int, ...], granularity: str, axis: int, scales: np.ndarray, zeros: np.ndarray
    ):
        self.shape = shape
        self.scales = np.ascontiguousarray(scales.reshape(-1), np.float32)
        self.zeros = np.ascontiguousarray(zeros.reshape(-1), np.float32)
        self.rows, self.groups = scales.shape if scales.ndim == 2 else (1, scales.size)
        numel = int(np.prod(shape)) if shape else 1
        # each scale covers a run of consecutive flat elements unless the channel axis is not 0
        self.blocked = granularity == "tensor" or len(shape) < 2 or axis == 0
        self.group_len = max(1, numel // max(1, self.scales.size))
        self.axis = axis

    def scale_index(self, start: int, stop: int) -> np.ndarray:
        if self.blocked:
            return np.arange(start, stop, dtype=np.int64) // self.group_len
        return _scale_index(start, stop, self.shape, self.axis, self.rows, self.groups)

    def __call__(self, codes: np.ndarray, start: int, out: np.ndarray) -> None:
        if self.blocked:
            K.dequant_blocked(codes, start, self.group_len, self.scales, self.zeros, out)
            return
        g = self.scale_index(start, start + out.size)
        np.subtract(codes.astype(np.float32), self.zeros[g], out=out)
        out *= self.scales[g]


def _packed_reader(
    st: StoredTensors, key: str, entry: dict[str, Any], shape: tuple[int, ...], dtype: str
) -> RangeFn:
    enc = st.manifest["encodings"].get(key)
    if enc is None:
        raise ArtifactError(st.path, f"quantized tensor '{key}' has no encoding in the manifest")
    bits = int(entry["bits"])
    scales = st.component(f"{key}{SEP}scales").astype(np.float32)
    stored_shape = st._raw[f"{key}{SEP}scales"][2]  # [rows, groups] as written (QuantEncoding.scales)
    grid = stored_shape if len(stored_shape) == 2 else tuple(enc.get("scales_shape", (1, scales.size)))
    scales = scales.reshape([int(x) for x in grid])
    if enc["symmetric"]:
        zeros = np.full(scales.shape, float(1 << (bits - 1)), np.float32)
    else:
        zcodes = np.empty(scales.size, np.uint8)
        K.unpack_range(np.ascontiguousarray(st.component(f"{key}{SEP}zeros")), bits, 0, zcodes)
        zeros = zcodes.astype(np.float32).reshape(scales.shape)
    deq = _Dequant(shape, str(enc["granularity"]), int(enc["axis"]), scales, zeros)
    packed = st.component(f"{key}{SEP}codes")
    mask = st.component(f"{key}{SEP}mask") if entry["form"] == "packed-bitmask" else None
    layout = _scale_layout(deq, shape)
    if layout is not None:  # decoded in a kernel (and, float32, inside the comparison's kernel)
        a, b, c, sc, zs = layout
        kind = K.PACKED if mask is None else K.PACKED_BITMASK
        spec = _spec(
            kind,
            mask=_NO_U8 if mask is None else mask,
            packed=packed,
            bits=bits,
            scales=sc,
            zeros=zs,
            a=a,
            b=b,
            c=c,
        )
        reader = _SpecReader(spec, _MaskIndex(mask) if mask is not None else None, dtype=dtype)
        if mask is None and deq.blocked and dtype == "float32":
            reader.packed = PackedSpec(
                np.ascontiguousarray(packed), bits, deq.group_len, deq.scales, deq.zeros
            )
        return reader
    index = _MaskIndex(mask) if mask is not None else None
    zero_codes = zeros.reshape(-1).astype(np.uint8)
    scratch, codes_buf = _Scratch(), [np.empty(0, np.uint8)]

    def codes_of(start: int, stop: int) -> np.ndarray:
        m = stop - start
        if codes_buf[0].size < m:
            codes_buf[0] = np.empty(m, np.uint8)
        buf = codes_buf[0][:m]
        if index is None:
            if bits == 8:
                return packed[start:stop]
            K.unpack_range(packed, bits, start, buf)
            return buf
        off, pos = index.span(start, stop)  # the stored codes are those of non-zero elements
        buf[:] = zero_codes[deq.scale_index(start, stop)]
        nz = np.empty(pos.size, np.uint8)
        K.unpack_range(packed, bits, off, nz)
        buf[pos] = nz
        return buf

    def read(start: int, stop: int) -> np.ndarray:
        out = scratch.get(stop - start)
        deq(codes_of(start, stop), start, out)
        return _round_to(out, dtype)

    if index is None and deq.blocked and dtype == "float32":
        return _PackedRange(
            read, PackedSpec(np.ascontiguousarray(packed), bits, deq.group_len, deq.scales, deq.zeros)
        )
    return read


def _scale_layout(
    deq: _Dequant, shape: tuple[int, ...]
) -> tuple[int, int, int, np.ndarray, np.ndarray] | None:
    """(a, b, c, scales, zeros) of the decode kernels' scale index ((i // a) * b + i % c, see
    `kernels.SPEC`) for this encoding's layout; None for a layout they do not walk (a channel
    axis other than 0 on a tensor of more than two dims)."""
    if deq.blocked:
        return deq.group_len, 1, 1, deq.scales, deq.zeros
    if len(shape) == 2 and deq.axis == 1:  # [in, out] (transformers' Conv1D): scales as [groups, out]
        out = int(shape[1])
        group_len = int(shape[0]) // max(1, deq.groups)
        grid = (deq.rows, deq.groups)
        sc = np.ascontiguousarray(deq.scales.reshape(grid).T).reshape(-1)
        zs = np.ascontiguousarray(deq.zeros.reshape(grid).T).reshape(-1)
        return out * group_len, out, out, sc, zs
    return None


class PackedSpec(NamedTuple):
    """A float32 tensor stored as packed codes whose scale / zero point index is
    element // group_len: what a fused kernel needs to dequantize it on the fly."""

    packed: np.ndarray  # uint8 bit stream (view of the mapped file)
    bits: int
    group_len: int
    scales: np.ndarray  # float32, one per group
    zeros: np.ndarray  # float32, one per group


class _PackedRange:
    """A range reader that also offers its :class:`PackedSpec` (attribute `packed`), so the
    comparison can dequantize inside its statistics kernel instead of through a buffer."""

    def __init__(self, read: RangeFn, spec: PackedSpec):
        self._read = read
        self.packed = spec

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return self._read(start, stop)


def _qint8_reader(st: StoredTensors, key: str, entry: dict[str, Any], shape: tuple[int, ...]) -> RangeFn:
    scales = st.component(f"{key}{SEP}scales").astype(np.float32)  # as dequantize_qint8: float32
    zps = (st.component(f"{key}{SEP}zero_points").astype(np.int64) if entry.get("has_zero_points")
           else np.zeros(scales.size, np.int64))  # fmt: skip
    channel = entry["qscheme"] == "channel"
    axis = int(entry["axis"]) if channel else 0
    rows = int(shape[axis]) if channel and shape else 1
    values = st.component(f"{key}{SEP}values")
    index = _MaskIndex(st.component(f"{key}{SEP}mask")) if entry.get("sparse") else None
    scratch = _Scratch()

    def read(start: int, stop: int) -> np.ndarray:
        if index is None:
            ints = values[start:stop].astype(np.int64)
        else:
            off, pos = index.span(start, stop)
            ints = np.zeros(stop - start, np.int64)
            ints[pos] = values[off : off + pos.size]
        g = _scale_index(start, stop, shape, axis, rows, 1) if channel else np.zeros(stop - start, np.int64)
        out = scratch.get(stop - start)
        np.multiply((ints - zps[g]).astype(np.float32), scales[g], out=out)
        return out

    return read


def _palette_reader(
    st: StoredTensors, key: str, entry: dict[str, Any], shape: tuple[int, ...], dtype: str
) -> RangeFn:
    """A palettized tensor (ops/palettize.py): value of flat element i = lut[g, code_i]
    (x scale[row]) in float32, row = (i // inner) % rows along the encoding's channel axis and
    g = row // group_size, so any range needs only its own codes."""
    enc = st.manifest["encodings"].get(key)
    if enc is None:
        raise ArtifactError(st.path, f"palettized tensor '{key}' has no encoding in the manifest")
    bits = int(entry["bits"])
    lut = st.component(f"{key}{SEP}lut").astype(np.float32).reshape(-1)
    k = 1 << bits
    axis = int(enc["axis"])
    rows = int(shape[axis]) if len(shape) >= 2 else 1
    inner = int(np.prod(shape[axis + 1 :])) if len(shape) >= 2 else 1
    per = rows if enc["granularity"] == "tensor" else int(enc["group_size"])
    if lut.size != (rows // per) * k:
        raise ArtifactError(
            st.path, f"tensor '{key}': LUT of {lut.size} values, expected {(rows // per) * k}"
        )
    # the row's values table [rows, k] (the per-row LUT times its scale): few, and one gather
    table = np.repeat(lut.reshape(rows // per, k), per, axis=0)
    if enc.get("per_channel_scale"):
        scales = st.component(f"{key}{SEP}scales").astype(np.float32).reshape(rows, 1)
        table = table * scales  # float32 x float32, as the torch decode
    table = np.ascontiguousarray(table.reshape(-1), np.float32)
    packed = np.ascontiguousarray(st.component(f"{key}{SEP}codes"))
    scratch, codes_buf = _Scratch(), [np.empty(0, np.uint8)]

    def read(start: int, stop: int) -> np.ndarray:
        m = stop - start
        if codes_buf[0].size < m:
            codes_buf[0] = np.empty(m, np.uint8)
        codes = codes_buf[0][:m]
        K.unpack_range(packed, bits, start, codes)
        row = (np.arange(start, stop, dtype=np.int64) // inner) % rows
        out = scratch.get(m)
        np.take(table, row * k + codes, out=out)
        return _round_to(out, dtype)

    return read
