"""Efficiency metrics of a model: size counts, stored bytes, latency, throughput and peak memory.

Latency protocol (why: README, "Latency on a busy machine"). Other processes can only ever add
time to a forward pass, never take it away, so the figure is built to ignore what they add:

- the clock: on the CPU each call is timed by the calling thread's CPU clock with torch limited
  to one intra-op thread while measuring, so time the thread spends descheduled (another process
  on its core, OpenMP threads waiting on a preempted peer: a 3 ms model read 534 ms that way) is
  not counted; on CUDA by CUDA events around the call (the device's time); on MPS by the wall
  clock with the device synchronised;
- the rounds: after one warm-up call (which also gives the cost of a call), `min_rounds` to
  `max_rounds` short rounds of `k` calls each (`k` fills about `round_s`), while the `budget_s`
  lasts; several models are measured round by round in turn (`measure_latencies`), so each sees
  the same conditions and their ratio is fair;
- the estimate: the lowest round median (a round's median ignores a spike inside it; the lowest
  round is the least disturbed; short rounds make an undisturbed one likely). The spread is how
  far the round medians' upper quartile lies above it; a spread wider than `noisy_spread` of the
  estimate marks the measurement noisy (the rounds disagree: the figure is not to be trusted).

The timer and the clock that keeps the budget are injectable, so the protocol itself is testable.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    """Wall-clock timing; `sync` (e.g. torch.mps.synchronize) runs before each reading so queued
    device work is counted. `clock` is injectable for tests."""

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


@dataclass
class ThreadCpuTimer:
    """The calling thread's CPU time over the call (user + system): time spent waiting for a core
    is not in it. Meaningful for work done on the calling thread only, so it is used with torch
    limited to one intra-op thread (`one_thread`). Keeps each call's wall time too (`walls`), to
    say in the detail how much a busy machine stretched it."""

    cpu: Callable[[], float] = time.thread_time
    wall: Callable[[], float] = time.perf_counter
    walls: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], Any]) -> float:
        w0, c0 = self.wall(), self.cpu()
        fn()
        c1, w1 = self.cpu(), self.wall()
        self.walls.append(w1 - w0)
        return c1 - c0


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


# Windows' thread clock ticks in 15.6 ms steps: too coarse for a forward pass; wall clock there.
_THREAD_CLOCK_OK = sys.platform != "win32"


def timer_for(device: torch.device) -> Timer:
    if device.type == "cuda":
        return CudaEventTimer(device)
    if device.type == "mps":
        return ClockTimer(sync=torch.mps.synchronize)
    return ThreadCpuTimer() if _THREAD_CLOCK_OK else ClockTimer()


def timer_method(timer: Timer) -> str:
    """How a timer measures, as stored with each measurement (measurements differing in it are
    not compared with each other)."""
    if isinstance(timer, CudaEventTimer):
        return "cuda events"
    if isinstance(timer, ThreadCpuTimer):
        return "thread CPU time, 1 thread"
    if isinstance(timer, ClockTimer):
        return "wall clock"
    return type(timer).__name__


@contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """torch limited to one intra-op thread inside (restored after): the thread CPU clock then
    sees all of a forward pass's work."""
    if not enabled:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class LatencyProtocol:
    """How many calls and rounds a latency measurement makes; see the module docstring."""

    warmup: int = 1
    min_rounds: int = 3
    max_rounds: int = 9
    # a round's calls fill about this long (one call when a call is longer): short, so that some
    # rounds fall between two preemptions (a preempted call comes back to cold caches)
    round_s: float = 0.004
    max_calls: int = 32  # calls per round at most (a model of microseconds needs no more)
    budget_s: float | None = 0.25  # no new round starts past this (wall), beyond min_rounds
    noisy_spread: float = 0.25  # a spread above this share of the estimate is noisy

    def calls_per_round(self, call_s: float) -> int:
        if not math.isfinite(call_s) or call_s <= 0:
            return self.max_calls
        return max(1, min(self.max_calls, round(self.round_s / call_s)))


def run_protocol(evaluation_s: float | None = None) -> LatencyProtocol:
    """How a run measures each model it makes: at least two rounds, then more while a tenth of
    the time its evaluation took lasts (0.05 to 0.25 s), so measuring stays a small share of each
    variant's run however large the model (`bonsai measure` takes more rounds: measure.py)."""
    budget = 0.25 if evaluation_s is None else min(0.25, max(0.05, 0.1 * evaluation_s))
    return LatencyProtocol(min_rounds=2, budget_s=budget)


@dataclass
class Latency:
    """One latency measurement. `value_s`: the lowest round median; `spread_s`: from it to the
    round medians' upper quartile; `noisy`: the spread is wider than the protocol accepts (or one
    round only)."""

    value_s: float
    spread_s: float
    rounds_s: list[float]  # each round's median, in the order measured
    samples_s: list[list[float]]  # each round's calls
    noisy: bool
    warmup: int
    batch_size: int
    device: str
    method: str
    wall_s: float | None = None  # median wall time of the timed calls (CPU clock only)
    load: float | None = None  # 1-minute load average when measured (where the OS says)
    measured_at: float = 0.0  # time.time()

    @property
    def relative_spread(self) -> float:
        return self.spread_s / self.value_s if self.value_s > 0 else float("inf")

    @property
    def throughput(self) -> float:
        """Instances per second at this batch size."""
        return self.batch_size / self.value_s if self.value_s > 0 else float("inf")

    @property
    def calls(self) -> int:
        return sum(len(r) for r in self.samples_s)


def load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def summarize(
    rounds: list[list[float]],
    *,
    protocol: LatencyProtocol,
    batch_size: int,
    device: str,
    method: str,
    warmup: int,
    wall_s: float | None = None,
    load: float | None = None,
) -> Latency:
    """The estimate, spread and noisy flag of a model's rounds (each a list of call times)."""
    medians = [statistics.median(r) for r in rounds if r]
    if not medians:
        raise ValueError("a latency needs at least one timed call")
    upper = statistics.quantiles(medians, n=4, method="inclusive")[2] if len(medians) > 1 else medians[0]
    value, spread = min(medians), upper - min(medians)
    noisy = len(medians) < 2 or (spread > protocol.noisy_spread * value if value > 0 else True)
    return Latency(
        value_s=value,
        spread_s=spread,
        rounds_s=medians,
        samples_s=[list(r) for r in rounds],
        noisy=noisy,
        warmup=warmup,
        batch_size=batch_size,
        device=device,
        method=method,
        wall_s=wall_s,
        load=load,
        measured_at=time.time(),
    )


def measure_latencies(
    fns: Sequence[Callable[[], Any]],
    *,
    batch_sizes: Sequence[int],
    device: torch.device,
    protocol: LatencyProtocol | None = None,
    timer: Timer | None = None,
    clock: Callable[[], float] = time.perf_counter,
    call_s: Sequence[float | None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[Latency]:
    """Measure several models' calls interleaved: every round runs each model's calls in turn, so
    a burst of load hits them alike. `call_s`: a known cost of one call per model (a call already
    made, e.g. the peak-memory one, which then also stands for the warm-up); `clock` keeps the
    budget (wall time). `cancelled` is polled between rounds (a cancelled measurement raises)."""
    from ..ops.registry import Cancelled

    p = protocol or LatencyProtocol()
    if p.min_rounds < 1 or p.max_rounds < p.min_rounds:
        raise ValueError("need 1 <= min_rounds <= max_rounds")
    timer = timer or timer_for(device)
    known = list(call_s) if call_s is not None else [None] * len(fns)
    start = clock()
    k: list[int] = []
    warmups: list[int] = []
    for fn, cost in zip(fns, known, strict=True):
        n_warm = p.warmup if cost is None else 0
        for i in range(n_warm):
            t = timer.time(fn)
            cost = t if i == n_warm - 1 else cost
        k.append(p.calls_per_round(cost) if cost is not None else 1)
        warmups.append(n_warm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if isinstance(timer, ThreadCpuTimer):
        timer.walls.clear()  # the warm-up's wall time is not the figure's
    rounds: list[list[list[float]]] = [[] for _ in fns]
    walls: list[list[float]] = [[] for _ in fns]
    while len(rounds[0]) < p.max_rounds if fns else False:
        if len(rounds[0]) >= p.min_rounds and p.budget_s is not None and clock() - start >= p.budget_s:
            break
        if cancelled():
            raise Cancelled()
        for i, fn in enumerate(fns):
            rounds[i].append([timer.time(fn) for _ in range(k[i])])
            if isinstance(timer, ThreadCpuTimer):
                walls[i] += timer.walls
                timer.walls.clear()
            if len(rounds[i]) == 1 and call_s is not None:
                # a known cost is only an estimate (the peak-memory call's wall time, say): the
                # first round's own calls say what a call costs on this clock
                k[i] = p.calls_per_round(statistics.median(rounds[i][0]))
    method = timer_method(timer)
    load = load_average()
    return [
        summarize(
            rounds[i],
            protocol=p,
            batch_size=batch_sizes[i],
            device=str(device),
            method=method,
            warmup=warmups[i],
            wall_s=statistics.median(walls[i]) if walls[i] else None,
            load=load,
        )
        for i in range(len(fns))
    ]


def measure_latency(
    fn: Callable[[], Any],
    *,
    batch_size: int,
    device: torch.device,
    protocol: LatencyProtocol | None = None,
    timer: Timer | None = None,
    clock: Callable[[], float] = time.perf_counter,
    call_s: float | None = None,
) -> Latency:
    """One model's latency (see `measure_latencies`)."""
    return measure_latencies(
        [fn],
        batch_sizes=[batch_size],
        device=device,
        protocol=protocol,
        timer=timer,
        clock=clock,
        call_s=[call_s],
    )[0]


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
            return PeakMemory(
                resident + max(0, peak - before),
                "cpu: model tensors + peak RSS growth over the call (VmHWM after reset)",
            )
    base = _maxrss()
    fn()
    return PeakMemory(
        resident + max(0, _maxrss() - base), "cpu: model tensors + ru_maxrss growth (lower bound)"
    )


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
    from ..artifacts.forms import count_nonzero  # numpy's count: ~10x torch's on the host

    return sum(count_nonzero(p) for p in module.parameters())


# -- everything together --------------------------------------------------------------------------
@dataclass
class LatencyMetric(Metric):
    """The latency metric with what the store keeps of its measurement: the spread (same unit as
    the value), the noisy flag, and the measurement itself for the model's history
    (store/measurements.py: the stored figure is the most trustworthy of that history)."""

    spread: float | None = None
    noisy: bool = False
    measurement: dict[str, Any] | None = None


def latency_metrics(lat: Latency) -> list[Metric]:
    """`latency` (ms, with its spread and measurement) and `throughput` of one measurement."""
    ms = 1000.0
    calls = sorted({len(r) for r in lat.samples_s})
    per_round = "/".join(str(c) for c in calls)
    how = (
        f"lowest of {len(lat.rounds_s)} round medians ({per_round} call{'s' if calls != [1] else ''} each), "
        f"{lat.method}, batch {lat.batch_size}, {lat.device}"
    )
    if lat.device == "cpu":
        how += f", {os.cpu_count() or 0} CPU cores visible"
    if lat.wall_s is not None:
        how += f"; wall {lat.wall_s * ms:.3g} ms"
    if lat.load is not None:
        how += f" at load {lat.load:.1f}"
    if lat.noisy:
        why = (
            "one round only"
            if len(lat.rounds_s) < 2
            else (
                f"the rounds disagree: their medians' upper quartile is {100 * lat.relative_spread:.0f}% above "
                f"the lowest ({min(lat.rounds_s) * ms:.3g}-{max(lat.rounds_s) * ms:.3g} ms)"
            )
        )
        how = f"noisy: {why}; " + how
    measurement = {
        "value": lat.value_s * ms,
        "spread": lat.spread_s * ms,
        "rounds": len(lat.rounds_s),
        "calls": lat.calls,
        "noisy": lat.noisy,
        "device": lat.device,
        "batch_size": lat.batch_size,
        "method": lat.method,
        "measured_at": lat.measured_at,
        "load": lat.load,
        "wall": None if lat.wall_s is None else lat.wall_s * ms,
        "detail": how,
    }
    return [
        LatencyMetric(
            "latency",
            lat.value_s * ms,
            "ms",
            False,
            headline=True,
            detail=how,
            spread=lat.spread_s * ms,
            noisy=lat.noisy,
            measurement=measurement,
        ),
        Metric(
            "throughput",
            lat.throughput,
            "instances/s",
            True,
            detail=f"at batch {lat.batch_size}, from the latency",
        ),
    ]


@dataclass
class Companion:
    """Another way to run the same model (a deploy target's runtime), timed in the same rounds as
    the eager model so their ratio is fair: `call` runs it once on the example batch, `metrics`
    turns (its latency, the eager model's from the same rounds) into its metrics."""

    call: Callable[[], Any]
    batch_size: int
    metrics: Callable[[Latency, Latency], list[Metric]]


@dataclass
class EfficiencyOptions:
    # Small enough that measuring costs a fraction of evaluating 200 instances (a batch of 32 on
    # one thread made measuring half of each variant's run time), large enough to use the kernels.
    batch_size: int = 8
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)
    measure_speed: bool = True
    timer: Timer | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    companions: list[Companion] = field(default_factory=list)


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
        Metric(
            "nonzero_parameters",
            float(nonzero),
            "",
            False,
            detail=f"{100.0 * nonzero / params:.1f}% of parameters" if params else "",
        ),
    ]
    if stored_bytes is not None:
        metrics.append(
            Metric(
                "stored_size",
                float(stored_bytes),
                "B",
                False,
                headline=True,
                detail="bytes of the artifact files as written",
            )
        )
        if base_stored_bytes:
            metrics.append(
                Metric(
                    "compression_ratio",
                    base_stored_bytes / stored_bytes if stored_bytes else 0.0,
                    "x",
                    True,
                    detail="base model's stored size / this model's",
                )
            )
    if o.measure_speed:
        metrics.extend(speed_metrics(model, task, device, o))
    return metrics


def example_call(
    model: nn.Module, task: Task, device: torch.device, batch_size: int
) -> tuple[Callable[[], None], int]:
    """One forward pass of `model` on the task's example batch (on `device`), and the batch's size."""
    batch: Batch = task.to_device(task.example_batch(batch_size), device)

    def call() -> None:
        with torch.inference_mode():
            task.forward(model, batch)

    return call, len(batch.ids)


def speed_metrics(model: nn.Module, task: Task, device: torch.device, o: EfficiencyOptions) -> list[Metric]:
    call, n = example_call(model, task, device, o.batch_size)
    was_training = model.training
    model.eval()
    timer = o.timer or timer_for(device)
    try:
        with one_thread(isinstance(timer, ThreadCpuTimer)):
            # the peak-memory call is also the warm-up, and tells what one call costs
            t0 = time.perf_counter()
            mem = measure_peak_memory(call, device, resident=tensor_bytes(model))
            first = time.perf_counter() - t0
            lats = measure_latencies(
                [call, *(c.call for c in o.companions)],
                batch_sizes=[n, *(c.batch_size for c in o.companions)],
                device=device,
                protocol=o.protocol,
                timer=timer,
                call_s=[first, *(None for _ in o.companions)],
            )
    finally:
        model.train(was_training)
    lat = lats[0]
    return [
        *latency_metrics(lat),
        Metric("batch_size", float(n), "", True, detail="batch size of the latency and memory runs"),
        Metric("peak_memory", float(mem.bytes), "B", False, detail=mem.method),
        *(m for c, other in zip(o.companions, lats[1:], strict=True) for m in c.metrics(other, lat)),
    ]
