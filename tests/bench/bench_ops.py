"""Benchmark: quantize and prune a ~100M-parameter GPT-2-size transformer (random weights).

Run: `.venv/bin/python tests/bench/bench_ops.py [--layers 12] [--threads N]`. Not a timed test.

For each op it reports seconds and parameters processed per second, next to the time to read all
weights once (one reduction pass over every parameter: the memory-bound floor), measured in the
same run, and the ratio op / floor. It also times writing the int4 artifact (bit packing) and
reports the stored size, and compares with torchao's int8 / int4 weight-only quantization when
torchao imports (else "unavailable"). The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch import nn


def build(layers: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=layers, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def read_floor(model: nn.Module, repeats: int = 3) -> tuple[float, float]:
    """Best (wall, CPU) seconds of one pass reading every parameter once (a reduction per tensor)."""
    params = list(model.parameters())
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        acc = torch.zeros(())
        for p in params:
            acc += p.detach().sum()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu


CPU_SECONDS: list[float] = []  # CPU time of the last `timed` call (less sensitive to a busy machine)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS[:] = [time.process_time() - c0]
    return time.perf_counter() - t0, out


def run_op(model: nn.Module, original: dict[str, torch.Tensor], name: str, params: dict[str, Any]) -> dict[str, Any]:
    from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

    op = get_op(name)
    if op is None:
        return {"status": "unavailable", "reason": f"op {name} is not registered"}
    with torch.no_grad():  # restore the untouched weights (cheaper than building the model again)
        for n, p in model.named_parameters():
            p.copy_(original[n])
    cm = CompressedModel(model)
    ctx = OpContext(device=torch.device("cpu"), seed=0)
    try:
        seconds, cm = timed(lambda: op.fn(cm, op.resolve(params), ctx))
    except Exception as e:  # report, don't crash the whole benchmark
        return {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    from modelbonsai.ops.quantize import select_targets

    targets = select_targets(model, params.get("include"), params.get("exclude"), op=name)
    lookup = dict(model.named_parameters())
    count = sum(lookup[t].numel() for t in targets)
    return {"status": "ok", "seconds": round(seconds, 3), "cpu_seconds": round(CPU_SECONDS[0], 3), "params": count,
            "params_per_s": round(count / seconds), "cm": cm}


def torchao_compare(model: nn.Module, original: dict[str, torch.Tensor], floor: float) -> dict[str, Any]:
    try:
        import torchao  # noqa: F401
        from torchao.quantization import quantize_
    except Exception as e:
        return {"status": "unavailable", "reason": f"torchao does not import here ({type(e).__name__})"}
    out: dict[str, Any] = {"status": "ok"}
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

        configs = {"int8_weight_only": Int8WeightOnlyConfig(), "int4_weight_only_g128": Int4WeightOnlyConfig(group_size=128)}
    except Exception:
        from torchao.quantization import int4_weight_only, int8_weight_only

        configs = {"int8_weight_only": int8_weight_only(), "int4_weight_only_g128": int4_weight_only(group_size=128)}
    import copy

    for key, cfg in configs.items():
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(original[n])
        m = copy.deepcopy(model)
        try:
            seconds, _ = timed(lambda m=m, cfg=cfg: quantize_(m, cfg))
            out[key] = {"seconds": round(seconds, 3), "x_floor": round(seconds / floor, 1)}
        except Exception as e:
            out[key] = {"status": "error", "reason": f"{type(e).__name__}: {e}"[:200]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--layers", type=int, default=12, help="transformer blocks (12 = GPT-2 small, 124M)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    build_s, model = timed(lambda: build(args.layers))
    total = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 {args.layers} layers, {total / 1e6:.1f}M parameters, built in {build_s:.1f}s", file=sys.stderr)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    floor, floor_cpu = read_floor(model)
    floor_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"read floor: {floor:.3f}s, {floor_cpu:.3f}s CPU ({floor_bytes / floor / 1e9:.2f} GB/s)", file=sys.stderr)

    results: dict[str, Any] = {}
    plans = {
        "quantize.weights int8 channel": ("quantize.weights", {"bits": 8, "granularity": "channel"}),
        "quantize.weights int4 group128": ("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 128}),
        "prune.magnitude 50% global": ("prune.magnitude", {"sparsity": 0.5}),
    }
    artifact: dict[str, Any] = {}
    for label, (op, params) in plans.items():
        r = run_op(model, original, op, params)
        cm = r.pop("cm", None)
        if r["status"] == "ok":
            r["x_floor"] = round(r["seconds"] / floor, 1)
            r["cpu_x_floor"] = round(r["cpu_seconds"] / max(floor_cpu, 1e-9), 1)
            print(f"{label}: {r['seconds']:.2f}s ({r['cpu_seconds']:.2f}s CPU), {r['params_per_s'] / 1e6:.1f}M params/s, "
                  f"{r['x_floor']}x the read floor ({r['cpu_x_floor']}x in CPU time)", file=sys.stderr)
        else:
            print(f"{label}: {r['status']} ({r.get('reason')})", file=sys.stderr)
        results[label] = r
        if label.endswith("int4 group128") and cm is not None:
            from modelbonsai.artifacts import save_artifact

            with tempfile.TemporaryDirectory() as d:
                seconds, size = timed(lambda cm=cm, d=d: save_artifact(cm, Path(d) / "a"))
            artifact = {"seconds": round(seconds, 3), "cpu_seconds": round(CPU_SECONDS[0], 3),
                        "stored_bytes": size.bytes_total,
                        "fp32_bytes": floor_bytes, "ratio": round(size.bytes_total / floor_bytes, 4)}
            print(f"int4 artifact write: {seconds:.2f}s, {size.bytes_total / 1e6:.1f} MB "
                  f"({artifact['ratio']:.3f} of fp32)", file=sys.stderr)

    torchao = torchao_compare(model, original, floor)
    summary = {
        "bench": "bench_ops",
        "model": {"arch": "gpt2", "layers": args.layers, "params": total, "build_seconds": round(build_s, 2)},
        "threads": args.threads,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "read_floor": {"seconds": round(floor, 4), "cpu_seconds": round(floor_cpu, 4), "bytes": floor_bytes, "gb_per_s": round(floor_bytes / floor / 1e9, 2)},
        "ops": results,
        "int4_artifact_write": artifact,
        "torchao": torchao,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
