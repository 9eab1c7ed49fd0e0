"""Bit packing of low-bit integer codes and boolean masks, the stored form of quantized tensors.

Layout (little-endian bit stream): element i occupies bits [i*b, (i+1)*b) of the stream, byte 0
holding the lowest bits. So int4 is two codes per byte (first code in the low nibble), 2-bit four
per byte, and 3/5/6/7-bit codes straddle byte boundaries. Eight codes of b bits are exactly b
bytes, which is what the vectorised implementation below works on.
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK = 1 << 22  # codes per chunk: bounds the int64 temporaries to ~32 MB


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes needed for `count` codes of `bits` bits."""
    return (count * bits + 7) // 8


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned integer codes in [0, 2**bits) into a flat uint8 tensor."""
    _check_bits(bits)
    flat = codes.reshape(-1)
    if bits == 8:
        return flat.to(torch.uint8).contiguous()
    if bits == 1:  # masks: numpy's packbits is one pass (the strided ors below take 8), ~50x faster
        # (any non-zero code is a set bit: codes are 0 or 1; bool or uint8, no conversion pass)
        return torch.from_numpy(np.packbits(flat.detach().to("cpu").contiguous().numpy(), bitorder="little"))
    if bits in (2, 4):
        return _pack_aligned(flat.to(torch.uint8), bits)
    n = flat.numel()
    out = torch.empty(packed_nbytes(n, bits), dtype=torch.uint8)
    # Whole groups of 8 codes map to `bits` bytes; chunking keeps temporaries small.
    step = _CHUNK
    for start in range(0, n, step):
        part = flat[start : start + step].to(torch.int64)
        m = part.numel()
        pad = (-m) % 8
        if pad:
            part = torch.cat([part, part.new_zeros(pad)])
        groups = part.view(-1, 8)
        shifts = torch.arange(8, dtype=torch.int64) * bits
        words = (groups << shifts).sum(dim=1)  # at most 56 bits: no sign trouble
        byte_shifts = torch.arange(bits, dtype=torch.int64) * 8
        packed = ((words.unsqueeze(1) >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)
        first = start * bits // 8  # start is a multiple of 8, so this is exact
        length = packed_nbytes(m, bits)
        out[first : first + length] = packed[:length]
    return out


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: the first `count` codes as a flat uint8 tensor."""
    _check_bits(bits)
    flat = packed.reshape(-1)
    need = packed_nbytes(count, bits)
    if flat.numel() != need:
        raise ValueError(
            f"packed buffer holds {flat.numel()} bytes, {count} codes of {bits} bits need {need}"
        )
    if bits == 8:
        return flat.to(torch.uint8).clone()
    if bits == 1:  # as pack_codes: one pass of numpy's unpackbits
        bits_ = np.unpackbits(flat.detach().to("cpu", torch.uint8).numpy(), count=count, bitorder="little")
        return torch.from_numpy(bits_)
    if bits in (2, 4):
        return _unpack_aligned(flat, bits, count)
    out = torch.empty(count, dtype=torch.uint8)
    mask = (1 << bits) - 1
    for start in range(0, count, _CHUNK):
        m = min(_CHUNK, count - start)
        first = start * bits // 8
        part = flat[first : first + packed_nbytes(m, bits)].to(torch.int64)
        pad = (-part.numel()) % bits
        if pad:
            part = torch.cat([part, part.new_zeros(pad)])
        rows = part.view(-1, bits)
        words = (rows << (torch.arange(bits, dtype=torch.int64) * 8)).sum(dim=1)
        codes = (words.unsqueeze(1) >> (torch.arange(8, dtype=torch.int64) * bits)) & mask
        out[start : start + m] = codes.reshape(-1)[:m].to(torch.uint8)
    return out


def _pack_aligned(flat: torch.Tensor, bits: int) -> torch.Tensor:
    """Fast path when codes never straddle bytes (1, 2, 4 bits): uint8 shifts and ors only."""
    per = 8 // bits
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    cols = flat.view(-1, per)
    out = cols[:, 0].clone()
    for j in range(1, per):
        out |= cols[:, j] << (j * bits)
    return out


def _unpack_aligned(flat: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    per = 8 // bits
    mask = (1 << bits) - 1
    out = torch.empty(flat.numel(), per, dtype=torch.uint8)
    src = flat.to(torch.uint8)
    for j in range(per):
        torch.bitwise_and(src >> (j * bits), mask, out=out[:, j])
    return out.reshape(-1)[:count].clone() if out.numel() != count else out.reshape(-1)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as a flat uint8 bitmask (8 elements per byte, little-endian bits)."""
    return pack_codes(mask.reshape(-1).to(torch.uint8), 1)


def unpack_mask(packed: torch.Tensor, count: int) -> torch.Tensor:
    return unpack_codes(packed, 1, count).to(torch.bool)


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"bit width must be 1..8, got {bits}")
