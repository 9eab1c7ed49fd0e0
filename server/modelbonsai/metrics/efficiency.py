"""Efficiency metrics of a model: size counts, stored bytes, latency, throughput and peak memory.

Latency protocol: `warmup` untimed calls (caches, lazy init, CUDA kernels selection), then
`repeats` timed calls; the median is the headline and the interquartile range the spread. On
CUDA each call is timed with CUDA events around it and the device is synchronised, so the time
is the device's, not the launch's. The timer is injectable, so the protocol itself is testable.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..allocator import release_freed_memory
from ..tasks.base import Batch, Metric, Task


class Timer(Protocol):
    """Times one call of `fn` and returns seconds."""

    def time(self, fn: Callable[[], Any]) -> float: ...


@dataclass
class ClockTimer:
    """Wall-clock timing; `sync` (e.g. torch.cuda.synchronize for MPS-like devices) runs before each
    reading so queued device work is counted. `clock` is injectable for tests."""

    clock: Callable[[], float] = time.perf_counter
    sync: Callable[[], None] | None = None

    def time(self, fn: Callable[[], Any]) -> float:
        if self.sync:
            self.sync()
        start = self.clock()
        fn()
        if self.sync:
            self.sync()
        return self.clock() - start


class CudaEventTimer:
    """Device-side timing with CUDA events: record, run, record, synchronise, elapsed time."""

    def __init__(self, device: torch.device):
        self.device = device

    def time(self, fn: Callable[[], Any]) -> float:
        torch.cuda.synchronize(self.device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(self.device)
        return float(start.elapsed_time(end)) / 1000.0


def timer_for(device: torch.device) -> Timer:
    if device.type == "cuda":
        return CudaEventTimer(device)
    if device.type == "mps":
        return ClockTimer(sync=torch.mps.synchronize)
    return ClockTimer()


@dataclass
class Latency:
    median_s: float
    iqr_s: float
    std_s: float
    samples_s: list[float]
    warmup: int
    batch_size: int
    device: str
    method: str

    @property
    def throughput(self) -> float:
        """Instances per second at this batch size."""
        return self.batch_size / self.median_s if self.median_s > 0 else float("inf")


def measure_latency(
    fn: Callable[[], Any],
    *,
    batch_size: int,
    device: torch.device,
    warmup: int = 3,
    repeats: int = 20,
    timer: Timer | None = None,
) -> Latency:
    """Run `fn` `warmup` times untimed, then `repeats` times timed; median and spread of the latter."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    timer = timer or timer_for(device)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    samples = [timer.time(fn) for _ in range(repeats)]
    q = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [samples[0]] * 3
    method = "cuda events" if isinstance(timer, CudaEventTimer) else type(timer).__name__
    return Latency(
        median_s=statistics.median(samples),
        iqr_s=q[2] - q[0],
        std_s=statistics.pstdev(samples) if len(samples) > 1 else 0.0,
        samples_s=samples,
        warmup=warmup,
        batch_size=batch_size,
        device=str(device),
        method=method,
    )


# -- memory -------------------------------------------------------------------------------------
@dataclass
class PeakMemory:
    bytes: int
    method: str


def measure_peak_memory(fn: Callable[[], Any], device: torch.device, resident: int = 0) -> PeakMemory:
    """Peak memory of one call of `fn` on `device`.

    CUDA: torch.cuda.max_memory_allocated over the call (weights included: what the model needs
    resident). CPU: `resident` (the bytes of the model's tensors, which are in memory before the
    call) plus the growth of the process's peak resident set (VmHWM) over the call, after resetting
    the peak through /proc/self/clear_refs where Linux allows it; elsewhere the growth of
    ru_maxrss, which only shows a call that raises the process's all-time peak. Freed memory the
    process keeps is handed back first (glibc); small activations can still fit in memory the
    process holds, so on CPU the growth part is a lower bound.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return PeakMemory(int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated")
    # freed memory the process keeps (allocator.keep_freed_memory) is resident already: a call
    # served from it would not raise the resident set, so it goes back to the system first
    release_freed_memory()
    before = _rss()
    if _reset_peak_rss():
        fn()
        peak = _hwm()
        if peak is not None and before is not None:
            return PeakMemory(resident + max(0, peak - before),
                              "cpu: model tensors + peak RSS growth over the call (VmHWM after reset)")
    base = _maxrss()
    fn()
    return PeakMemory(resident + max(0, _maxrss() - base), "cpu: model tensors + ru_maxrss growth (lower bound)")


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss() -> int | None:
    return _status_kb("VmRSS")


def _hwm() -> int | None:
    return _status_kb("VmHWM")


def _reset_peak_rss() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # 5 = reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _maxrss() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # bytes on macOS, KiB on Linux


# -- counts -------------------------------------------------------------------------------------
def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers as held in memory (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def nonzero_count(module: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p.detach())) for p in module.parameters())


# -- everything together --------------------------------------------------------------------------
@dataclass
class EfficiencyOptions:
    batch_size: int = 32
    # enough for a stable median on small models without making a sweep of dozens of variants slow
    warmup: int = 2
    repeats: int = 10
    measure_speed: bool = True
    timer: Timer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def efficiency_metrics(
    model: nn.Module,
    task: Task,
    device: torch.device,
    *,
    stored_bytes: int | None = None,
    base_stored_bytes: int | None = None,
    options: EfficiencyOptions | None = None,
) -> list[Metric]:
    """Every efficiency metric of `model` (already on `device`), as Metrics.

    `stored_bytes` is the artifact's size on disk (the runner knows it); `base_stored_bytes` the
    base model's, for the compression ratio (the base's own ratio is 1).
    """
    o = options or EfficiencyOptions()
    params = parameter_count(model)
    nonzero = nonzero_count(model)
    metrics = [
        Metric("parameters", float(params), "", False),
        Metric("nonzero_parameters", float(nonzero), "", False,
               detail=f"{100.0 * nonzero / params:.1f}% of parameters" if params else ""),
    ]
    if stored_bytes is not None:
        metrics.append(Metric("stored_size", float(stored_bytes), "B", False, headline=True,
                              detail="bytes of the artifact files as written"))
        if base_stored_bytes:
            metrics.append(Metric("compression_ratio", base_stored_bytes / stored_bytes if stored_bytes else 0.0,
                                  "x", True, detail="base model's stored size / this model's"))
    if o.measure_speed:
        metrics.extend(speed_metrics(model, task, device, o))
    return metrics


def speed_metrics(model: nn.Module, task: Task, device: torch.device, o: EfficiencyOptions) -> list[Metric]:
    batch: Batch = task.to_device(task.example_batch(o.batch_size), device)
    n = len(batch.ids)
    was_training = model.training
    model.eval()

    def call() -> None:
        with torch.inference_mode():
            task.forward(model, batch)

    try:
        lat = measure_latency(call, batch_size=n, device=device, warmup=o.warmup, repeats=o.repeats,
                              timer=o.timer)
        mem = measure_peak_memory(call, device, resident=tensor_bytes(model))
    finally:
        model.train(was_training)
    where = f"batch {n}, {lat.device}, {os.cpu_count() or 0} CPU cores visible" if device.type == "cpu" \
        else f"batch {n}, {lat.device}"
    how = f"median of {len(lat.samples_s)} runs after {lat.warmup} warm-up, {where}, timed by {lat.method}"
    return [
        Metric("latency", lat.median_s * 1000.0, "ms", False, headline=True, detail=how),
        Metric("latency_iqr", lat.iqr_s * 1000.0, "ms", False, detail="interquartile range of the timed runs"),
        Metric("latency_std", lat.std_s * 1000.0, "ms", False, detail="standard deviation of the timed runs"),
        Metric("throughput", lat.throughput, "instances/s", True, detail=f"at batch {n}"),
        Metric("batch_size", float(n), "", True, detail="batch size of the latency and memory runs"),
        Metric("peak_memory", float(mem.bytes), "B", False, detail=mem.method),
    ]
