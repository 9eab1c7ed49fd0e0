"""Wire encoding of a 16 MiB float32 tensor against raw bytes (the floor): the msgpack envelope
in base64 (what the LSP hop carries), the same envelope through a file (msgpack bytes written
and read back, no base64), and a JSON list of floats (for scale). Prints one JSON object as its
last line, with figures, targets and `ok`; exits 1 on a miss.

Targets, each against its own floor: base64 costs 4/3 in size, so the LSP hop's bytes are at
most 1.34x raw (envelope and page headers included) and the file's at most 1.01x; encoding +
decoding the envelope takes at most 1.5x the bare floor of its channel (base64 of the raw bytes
and back; the raw bytes written to a file and read back), so the envelope itself stays cheap."""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelbonsai import wire

TARGET_B64_SIZE_RATIO = 1.34
TARGET_FILE_SIZE_RATIO = 1.01
TARGET_OVER_FLOOR = 1.5


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    arr = np.random.default_rng(0).standard_normal(4 * 1024 * 1024).astype(np.float32)  # 16 MiB
    raw_mb = arr.nbytes / 2**20

    t_raw_enc, raw = _best(arr.tobytes, 3)
    t_raw_dec, back_raw = _best(lambda: np.frombuffer(raw, dtype=np.float32).copy(), 3)
    assert np.array_equal(back_raw, arr)

    def mp_encode() -> list[str]:
        return [base64.b64encode(p).decode("ascii") for p in wire.paginate("tensor", {}, {"x": arr})]

    t_mp_enc, pages = _best(mp_encode, 3)
    t_mp_dec, back = _best(lambda: wire.join_pages([base64.b64decode(p) for p in pages]).tensors["x"], 3)
    assert np.array_equal(back, arr)

    t_b64_floor, _ = _best(
        lambda: np.frombuffer(base64.b64decode(base64.b64encode(raw)), dtype=np.float32), 3
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tile.msgpack"
        floor_path = Path(tmp) / "tile.raw"

        def file_floor() -> Any:
            floor_path.write_bytes(arr.tobytes())
            return np.frombuffer(floor_path.read_bytes(), dtype=np.float32)

        t_file_floor, _ = _best(file_floor, 3)

        def file_encode() -> int:
            data = wire.encode_result("tensor", {}, {"x": arr})
            path.write_bytes(data)
            return len(data)

        t_file_enc, file_bytes = _best(file_encode, 3)
        t_file_dec, back_file = _best(lambda: wire.decode_result(path.read_bytes()).tensors["x"], 3)
        assert np.array_equal(back_file, arr)

    t_js_enc, text = _best(lambda: json.dumps(arr.tolist()), 1)
    t_js_dec, back_js = _best(lambda: np.asarray(json.loads(text), dtype=np.float32), 1)
    assert np.array_equal(back_js, arr)

    raw_total = t_raw_enc + t_raw_dec

    def channel(
        nbytes: int, enc: float, dec: float, size_target: float | None = None, floor_s: float | None = None
    ) -> dict[str, Any]:
        total = enc + dec
        out: dict[str, Any] = {
            "bytes": nbytes,
            "encode_s": round(enc, 5),
            "decode_s": round(dec, 5),
            "total_s": round(total, 5),
            "size_ratio": round(nbytes / len(raw), 4),
            "time_vs_raw": round(total / raw_total, 2),
            "mb_per_s": round(raw_mb / total, 1),
        }
        if size_target is not None and floor_s is not None:
            out["floor_s"] = round(floor_s, 5)
            out["over_floor"] = round(total / floor_s, 2)
            out["target_over_floor"] = TARGET_OVER_FLOOR
            out["target_size_ratio"] = size_target
            out["ok"] = out["size_ratio"] <= size_target and out["over_floor"] <= TARGET_OVER_FLOOR
        return out

    results = {
        "raw_bytes": channel(len(raw), t_raw_enc, t_raw_dec),
        "msgpack_base64": {
            **channel(sum(len(p) for p in pages), t_mp_enc, t_mp_dec, TARGET_B64_SIZE_RATIO, t_b64_floor),
            "pages": len(pages),
        },
        "file_msgpack": channel(file_bytes, t_file_enc, t_file_dec, TARGET_FILE_SIZE_RATIO, t_file_floor),
        "json_list": channel(len(text), t_js_enc, t_js_dec),
    }
    missed = [k for k, v in results.items() if v.get("ok") is False]
    for k in missed:
        v = results[k]
        print(
            f"MISSED: {k}: {v['size_ratio']}x raw bytes (target <= {v['target_size_ratio']}), "
            f"{v['over_floor']}x its channel's floor (target <= {TARGET_OVER_FLOOR})",
            file=sys.stderr,
        )
    print(
        json.dumps(
            {
                "bench": "wire",
                "load_average": os.getloadavg()[0],
                "tensor_mb": raw_mb,
                **results,
                "missed": missed,
                "ok": not missed,
            }
        )
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
