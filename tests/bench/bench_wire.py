"""Wire encoding of a 16 MB float32 tensor: msgpack envelope in base64 (what the LSP hop carries),
a JSON list of floats, and raw bytes. Prints one JSON object as its last line."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from modelbonsai import wire


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    arr = np.random.default_rng(0).standard_normal(4 * 1024 * 1024).astype(np.float32)  # 16 MiB
    raw_mb = arr.nbytes / 2**20

    def mp_encode() -> list[str]:
        return [base64.b64encode(p).decode("ascii") for p in wire.paginate("tensor", {}, {"x": arr})]

    t_mp_enc, pages = _best(mp_encode, 3)
    t_mp_dec, back = _best(lambda: wire.join_pages([base64.b64decode(p) for p in pages]).tensors["x"], 3)
    assert np.array_equal(back, arr)

    t_js_enc, text = _best(lambda: json.dumps(arr.tolist()), 1)
    t_js_dec, back_js = _best(lambda: np.asarray(json.loads(text), dtype=np.float32), 1)
    assert np.array_equal(back_js, arr)

    t_raw_enc, raw = _best(arr.tobytes, 3)
    t_raw_dec, back_raw = _best(lambda: np.frombuffer(raw, dtype=np.float32), 3)
    assert np.array_equal(back_raw, arr)

    out = {
        "bench": "wire",
        "tensor_mb": raw_mb,
        "msgpack_base64": {"bytes": sum(len(p) for p in pages), "pages": len(pages),
                           "encode_s": t_mp_enc, "decode_s": t_mp_dec, "total_s": t_mp_enc + t_mp_dec},
        "json_list": {"bytes": len(text), "encode_s": t_js_enc, "decode_s": t_js_dec, "total_s": t_js_enc + t_js_dec},
        "raw_bytes": {"bytes": len(raw), "encode_s": t_raw_enc, "decode_s": t_raw_dec, "total_s": t_raw_enc + t_raw_dec},
    }
    out["msgpack_vs_json_size"] = out["msgpack_base64"]["bytes"] / out["json_list"]["bytes"]
    out["msgpack_vs_json_time"] = out["msgpack_base64"]["total_s"] / out["json_list"]["total_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
