"""The efficiency metrics: counts, ratio, and the latency protocol measured with a fake clock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbonsai import allocator
from modelbonsai.metrics import (
    ClockTimer,
    EfficiencyOptions,
    LatencyMetric,
    LatencyProtocol,
    ThreadCpuTimer,
    efficiency_metrics,
    latency_metrics,
    measure_latencies,
    measure_latency,
    measure_peak_memory,
    nonzero_count,
    one_thread,
    parameter_count,
    timer_for,
)
from modelbonsai.metrics.efficiency import summarize
from modelbonsai.tasks import ImageClassificationTask


class FakeClock:
    """Each call of the timed function advances the clock by the next scripted duration."""

    def __init__(self, durations: list[float]):
        self.now = 0.0
        self.durations: Iterator[float] = iter(durations)
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


class ScriptedTimer:
    """A timer whose readings come from a function of (model index, call number): the protocol
    is tested without running or timing anything. Advances `now` (the budget's clock) by each."""

    def __init__(self, duration: Callable[[int, int], float]):
        self.duration = duration
        self.now = 0.0
        self.calls: list[int] = []  # which model each call was, in order
        self._count: dict[int, int] = {}

    def clock(self) -> float:
        return self.now

    def fn(self, model: int) -> Callable[[], None]:
        def call() -> None:
            self.calls.append(model)

        call.model = model  # type: ignore[attr-defined]
        return call

    def time(self, fn: Callable[[], Any]) -> float:
        fn()
        model = fn.model  # type: ignore[attr-defined]
        n = self._count.get(model, 0)
        self._count[model] = n + 1
        t = self.duration(model, n)
        self.now += t
        return t


CPU = torch.device("cpu")


def test_warmup_is_excluded_and_the_lowest_round_median_reported() -> None:
    # a slow warm-up (100 s) must show up nowhere; 10 ms calls: one call per round of 10 ms
    durations = [100.0, 0.010, 0.012, 0.011, 0.013, 0.010, 0.014]
    fake = FakeClock(durations)
    lat = measure_latency(
        fake.work,
        batch_size=8,
        device=CPU,
        timer=ClockTimer(clock=fake.clock),
        clock=fake.clock,
        protocol=LatencyProtocol(warmup=1, min_rounds=3, max_rounds=3, round_s=0.01, budget_s=None),
    )
    assert fake.calls == 4
    assert lat.rounds_s == pytest.approx([0.010, 0.012, 0.011]) and lat.warmup == 1
    assert lat.value_s == pytest.approx(0.010)
    assert lat.spread_s == pytest.approx(0.0115 - 0.010)  # to the upper quartile of the medians
    assert not lat.noisy
    assert lat.throughput == pytest.approx(8 / 0.010)


def test_a_round_is_as_many_calls_as_fill_round_s() -> None:
    t = ScriptedTimer(lambda m, n: 0.001)
    lat = measure_latency(
        t.fn(0),
        batch_size=1,
        device=CPU,
        timer=t,
        clock=t.clock,
        protocol=LatencyProtocol(min_rounds=2, max_rounds=2, round_s=0.005, budget_s=None),
    )
    assert [len(r) for r in lat.samples_s] == [5, 5]
    assert lat.calls == 10 and lat.value_s == pytest.approx(0.001)


def test_interference_in_some_rounds_does_not_move_the_estimate() -> None:
    quiet = 0.004

    def busy_in_rounds_2_and_4(model: int, n: int) -> float:
        # call 0 is the warm-up; then rounds of 2 calls (round_s 8 ms): calls 3-4 and 7-8 are busy
        return quiet * 5 if n in (3, 4, 7, 8) else quiet

    t = ScriptedTimer(busy_in_rounds_2_and_4)
    protocol = LatencyProtocol(min_rounds=5, max_rounds=5, round_s=0.008, budget_s=None)
    lat = measure_latency(t.fn(0), batch_size=1, device=CPU, timer=t, clock=t.clock, protocol=protocol)
    assert lat.value_s == pytest.approx(quiet)  # exactly the quiet figure
    assert lat.rounds_s == pytest.approx([quiet, quiet * 5, quiet, quiet * 5, quiet])
    assert lat.noisy  # but the rounds disagree, and it says so
    assert lat.spread_s == pytest.approx(quiet * 4)


def test_a_spike_inside_a_round_is_ignored_by_its_median() -> None:
    t = ScriptedTimer(lambda m, n: 0.5 if n == 5 else 0.002)  # one call of one round stalls 500 ms
    protocol = LatencyProtocol(min_rounds=3, max_rounds=3, round_s=0.006, budget_s=None)
    lat = measure_latency(t.fn(0), batch_size=1, device=CPU, timer=t, clock=t.clock, protocol=protocol)
    assert lat.rounds_s == pytest.approx([0.002] * 3) and not lat.noisy


def test_the_budget_stops_new_rounds_but_min_rounds_always_run() -> None:
    t = ScriptedTimer(lambda m, n: 0.1)  # 100 ms calls, a 150 ms budget: min_rounds still run
    protocol = LatencyProtocol(min_rounds=3, max_rounds=9, round_s=0.01, budget_s=0.15)
    lat = measure_latency(t.fn(0), batch_size=1, device=CPU, timer=t, clock=t.clock, protocol=protocol)
    assert len(lat.rounds_s) == 3
    t2 = ScriptedTimer(lambda m, n: 0.001)  # cheap calls: rounds go on until the budget is spent
    lat2 = measure_latency(
        t2.fn(0),
        batch_size=1,
        device=CPU,
        timer=t2,
        clock=t2.clock,
        protocol=LatencyProtocol(min_rounds=3, max_rounds=50, round_s=0.01, budget_s=0.1),
    )
    assert 3 < len(lat2.rounds_s) < 50
    assert t2.now == pytest.approx(0.1 + 0.001 * 10, abs=0.012)  # stops within a round of the budget


def test_several_models_are_measured_round_by_round_in_turn() -> None:
    t = ScriptedTimer(lambda m, n: 0.01 * (m + 1))
    lats = measure_latencies(
        [t.fn(0), t.fn(1)],
        batch_sizes=[4, 4],
        device=CPU,
        timer=t,
        clock=t.clock,
        protocol=LatencyProtocol(min_rounds=3, max_rounds=3, round_s=0.01, budget_s=None),
    )
    # warm-ups, then each round: model 0's call, model 1's call (1 call per round each)
    assert t.calls == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [x.value_s for x in lats] == pytest.approx([0.01, 0.02])


def test_interleaving_keeps_the_ratio_when_load_hits_a_round() -> None:
    # the machine is busy during the second round for both models alike
    def busy(m: int, n: int) -> float:
        base = 0.01 * (m + 1)
        return base * 3 if n == 2 else base

    t = ScriptedTimer(busy)
    lats = measure_latencies(
        [t.fn(0), t.fn(1)],
        batch_sizes=[1, 1],
        device=CPU,
        timer=t,
        clock=t.clock,
        protocol=LatencyProtocol(min_rounds=3, max_rounds=3, round_s=0.001, budget_s=None),
    )
    assert lats[1].value_s / lats[0].value_s == pytest.approx(2.0)


def test_a_known_call_cost_replaces_the_warm_up() -> None:
    t = ScriptedTimer(lambda m, n: 0.002)
    lat = measure_latency(
        t.fn(0),
        batch_size=1,
        device=CPU,
        timer=t,
        clock=t.clock,
        call_s=0.002,
        protocol=LatencyProtocol(min_rounds=2, max_rounds=2, round_s=0.004, budget_s=None),
    )
    assert lat.warmup == 0 and t.calls == [0] * 4  # 2 rounds of 2, no warm-up call


def test_a_wrong_known_cost_is_corrected_by_the_first_round() -> None:
    t = ScriptedTimer(lambda m, n: 0.001)  # said to cost 100 ms (a wall time on a busy machine)
    lat = measure_latency(
        t.fn(0),
        batch_size=1,
        device=CPU,
        timer=t,
        clock=t.clock,
        call_s=0.1,
        protocol=LatencyProtocol(min_rounds=3, max_rounds=3, round_s=0.005, budget_s=None),
    )
    assert [len(r) for r in lat.samples_s] == [1, 5, 5]


def test_a_run_measures_for_a_tenth_of_the_evaluation_within_bounds() -> None:
    from modelbonsai.metrics import run_protocol

    assert run_protocol(1.5).budget_s == pytest.approx(0.15) and run_protocol(1.5).min_rounds == 2
    assert run_protocol(0.01).budget_s == pytest.approx(0.05)  # a tiny model still gets some rounds
    assert run_protocol(60.0).budget_s == pytest.approx(0.25)
    assert run_protocol(None).budget_s == pytest.approx(0.25)


def test_a_cancelled_measurement_stops_between_rounds() -> None:
    from modelbonsai.ops.registry import Cancelled

    t = ScriptedTimer(lambda m, n: 0.001)
    rounds = [0]

    def cancelled() -> bool:
        rounds[0] += 1
        return rounds[0] > 2  # cancelled after two rounds

    with pytest.raises(Cancelled):
        measure_latencies(
            [t.fn(0)],
            batch_sizes=[1],
            device=CPU,
            timer=t,
            clock=t.clock,
            cancelled=cancelled,
            protocol=LatencyProtocol(min_rounds=5, max_rounds=5, round_s=0.001, budget_s=None),
        )
    assert len(t.calls) == 3  # the warm-up and two rounds of one call


def test_one_round_is_noisy() -> None:
    t = ScriptedTimer(lambda m, n: 0.002)
    lat = measure_latency(
        t.fn(0),
        batch_size=1,
        device=CPU,
        timer=t,
        clock=t.clock,
        protocol=LatencyProtocol(min_rounds=1, max_rounds=1, budget_s=None),
    )
    assert lat.noisy and lat.spread_s == 0


def test_thread_cpu_timer_reads_the_cpu_clock_and_keeps_the_wall() -> None:
    ticks = {"cpu": iter([1.0, 1.25]), "wall": iter([10.0, 13.0])}
    timer = ThreadCpuTimer(cpu=lambda: next(ticks["cpu"]), wall=lambda: next(ticks["wall"]))
    assert timer.time(lambda: None) == pytest.approx(0.25)  # descheduled for 2.75 s: not counted
    assert timer.walls == [pytest.approx(3.0)]
    if sys.platform != "win32":
        assert isinstance(timer_for(CPU), ThreadCpuTimer)


def test_one_thread_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_latency_metric_carries_spread_noisy_and_the_measurement() -> None:
    lat = summarize(
        [[0.010], [0.020], [0.010], [0.020]],
        protocol=LatencyProtocol(),
        batch_size=8,
        device="cpu",
        method="thread CPU time, 1 thread",
        warmup=1,
        wall_s=0.05,
        load=3.0,
    )
    latency, throughput = latency_metrics(lat)
    assert isinstance(latency, LatencyMetric)
    assert latency.value == pytest.approx(10.0) and latency.spread == pytest.approx(10.0) and latency.noisy
    assert latency.detail.startswith("noisy: the rounds disagree") and "(10-20 ms)" in latency.detail
    assert "load 3.0" in latency.detail and "wall 50 ms" in latency.detail
    m = latency.measurement
    assert m is not None and m["rounds"] == 4 and m["batch_size"] == 8 and m["method"].startswith("thread")
    assert throughput.value == pytest.approx(800.0)


def test_sync_runs_around_each_timed_call() -> None:
    fake = FakeClock([1.0, 1.0])
    events: list[str] = []
    timer = ClockTimer(clock=fake.clock, sync=lambda: events.append("sync"))
    timer.time(lambda: (events.append("run"), fake.work()))
    assert events == ["sync", "run", "sync"]


def test_counts() -> None:
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 0] = 1.0
        lin.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))
    assert parameter_count(lin) == 15
    assert nonzero_count(lin) == 2


def test_peak_memory_sees_a_large_allocation() -> None:
    def big() -> None:
        x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
        x.add_(1)

    mem = measure_peak_memory(big, torch.device("cpu"), resident=1000)
    assert mem.method.startswith("cpu") and mem.bytes >= 1000
    if "VmHWM" in mem.method:  # Linux: an exact reset of the peak, so the growth is visible
        assert mem.bytes >= 32 * 1024 * 1024


KEPT_PROBE = """
import numpy as np, torch
from modelbonsai.allocator import keep_freed_memory
from modelbonsai.metrics import measure_peak_memory
keep_freed_memory()  # as the `bonsai` command and the language server's worker do
held = [np.ones(1 << 20, np.float32) for _ in range(48)]  # 192 MB in 4 MB blocks, kept once freed
del held
def big():
    x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched: fits in the kept memory
    x.add_(1)
mem = measure_peak_memory(big, torch.device("cpu"))
print(mem.bytes, mem.method)
"""


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_peak_memory_sees_growth_in_a_process_that_keeps_freed_memory() -> None:
    # (in a child process: keeping freed memory is for the whole process.) The kept memory is
    # resident already; served from it, the call would show no growth unless it is handed back.
    out = subprocess.run(
        [sys.executable, "-c", KEPT_PROBE], capture_output=True, text=True, check=True
    ).stdout
    size, method = out.split(maxsplit=1)
    if "VmHWM" in method:
        assert int(size) >= 32 * 1024 * 1024


def _image_task(tmp_path: Path) -> ImageClassificationTask:
    save_file(
        {"images": torch.randn(10, 1, 4, 4), "labels": torch.arange(10) % 3},
        str(tmp_path / "eval.safetensors"),
    )
    return ImageClassificationTask({"data": "."}, tmp_path)


def test_efficiency_metrics_on_a_model(tmp_path: Path) -> None:
    task = _image_task(tmp_path)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    calls: list[int] = []
    fake_now = [0.0]

    def clock() -> float:
        fake_now[0] += 0.5  # every reading advances half a second: each timed run is 0.5 s
        calls.append(1)
        return fake_now[0]

    protocol = LatencyProtocol(min_rounds=3, max_rounds=3, round_s=0.0, budget_s=None)  # one call per round
    opts = EfficiencyOptions(batch_size=4, protocol=protocol, timer=ClockTimer(clock=clock))
    metrics = {
        m.name: m
        for m in efficiency_metrics(
            model, task, torch.device("cpu"), stored_bytes=100, base_stored_bytes=400, options=opts
        )
    }
    assert metrics["parameters"].value == 16 * 3 + 3
    assert metrics["stored_size"].value == 100 and not metrics["stored_size"].higher_is_better
    assert metrics["compression_ratio"].value == 4.0 and metrics["compression_ratio"].higher_is_better
    latency = metrics["latency"]
    assert isinstance(latency, LatencyMetric)
    assert latency.value == pytest.approx(500.0) and latency.spread == 0 and not latency.noisy
    assert latency.unit == "ms" and latency.headline
    assert "batch 4" in latency.detail and "lowest of 3 round medians" in latency.detail
    assert metrics["throughput"].value == pytest.approx(8.0)
    assert metrics["batch_size"].value == 4
    assert metrics["peak_memory"].value >= (16 * 3 + 3) * 4  # at least the weights
    # the peak-memory call stands for the warm-up: 3 rounds of one 0.5 s call, two readings each
    assert len(calls) == 6


def test_cuda_timer_uses_events() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from modelbonsai.metrics import CudaEventTimer

    dev = torch.device("cuda")
    x = torch.randn(512, 512, device=dev)
    run: Callable[[], Any] = lambda: x @ x  # noqa: E731
    lat = measure_latency(run, batch_size=1, device=dev)
    assert lat.method == "cuda events" and lat.value_s > 0
    assert isinstance(CudaEventTimer(dev).time(run), float)


def test_cuda_event_protocol_without_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path's order of operations, with torch.cuda's event API replaced by a recorder: the
    device is synchronised before the start event and after the end event (so the reading is the
    device's time, not the launch's), elapsed_time's milliseconds become seconds, and warm-up calls
    are neither timed nor recorded. (test_cuda_timer_uses_events runs the real thing on a GPU.)"""
    from modelbonsai.metrics import CudaEventTimer

    log: list[str] = []
    elapsed_ms = iter([4.0, 2.0, 3.0])

    class FakeEvent:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            self.name = "start" if not any(e.startswith("new") for e in log[-1:]) else "end"
            log.append(f"new {self.name}")

        def record(self) -> None:
            log.append(f"record {self.name}")

        def elapsed_time(self, end: FakeEvent) -> float:
            log.append("elapsed")
            return next(elapsed_ms)

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("sync"))
    dev = torch.device("cuda")
    calls = [0]

    def fn() -> None:
        calls[0] += 1
        log.append("call")

    protocol = LatencyProtocol(warmup=1, min_rounds=2, max_rounds=2, round_s=0.001, budget_s=None)
    lat = measure_latency(fn, batch_size=2, device=dev, protocol=protocol)
    assert lat.method == "cuda events"
    assert calls[0] == 3
    assert lat.rounds_s == pytest.approx([0.002, 0.003])  # the warm-up's 4 ms is not a sample
    assert lat.value_s == pytest.approx(0.002)
    assert lat.throughput == pytest.approx(2 / 0.002)
    # per timed call the exact protocol (the warm-up is timed too: it tells what a call costs)
    one = ["sync", "new start", "new end", "record start", "call", "record end", "sync", "elapsed"]
    assert log == [*one, "sync", *one * 2]
    assert isinstance(timer_for(dev), CudaEventTimer)
