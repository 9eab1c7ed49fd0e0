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
    efficiency_metrics,
    measure_latency,
    measure_peak_memory,
    nonzero_count,
    parameter_count,
    timer_for,
)
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


def test_warmup_is_excluded_and_median_reported() -> None:
    # three slow warm-up calls (100 s) must not show up anywhere in the result
    fake = FakeClock([100.0, 100.0, 100.0, 5.0, 1.0, 3.0, 2.0, 4.0])
    lat = measure_latency(fake.work, batch_size=8, device=torch.device("cpu"), warmup=3, repeats=5,
                          timer=ClockTimer(clock=fake.clock))
    assert fake.calls == 8
    assert lat.samples_s == [5.0, 1.0, 3.0, 2.0, 4.0]
    assert lat.median_s == 3.0
    assert lat.iqr_s == pytest.approx(4.0 - 2.0)
    assert lat.std_s == pytest.approx(2.0**0.5)
    assert lat.batch_size == 8 and lat.warmup == 3
    assert lat.throughput == pytest.approx(8 / 3.0)


def test_even_number_of_runs_takes_middle_mean() -> None:
    fake = FakeClock([9.0, 1.0, 2.0, 10.0, 3.0])
    lat = measure_latency(fake.work, batch_size=1, device=torch.device("cpu"), warmup=1, repeats=4,
                          timer=ClockTimer(clock=fake.clock))
    assert lat.median_s == 2.5


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
    out = subprocess.run([sys.executable, "-c", KEPT_PROBE], capture_output=True, text=True, check=True).stdout
    size, method = out.split(maxsplit=1)
    if "VmHWM" in method:
        assert int(size) >= 32 * 1024 * 1024


def _image_task(tmp_path: Path) -> ImageClassificationTask:
    save_file({"images": torch.randn(10, 1, 4, 4), "labels": torch.arange(10) % 3}, str(tmp_path / "eval.safetensors"))
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

    opts = EfficiencyOptions(batch_size=4, warmup=2, repeats=3, timer=ClockTimer(clock=clock))
    metrics = {m.name: m for m in efficiency_metrics(model, task, torch.device("cpu"), stored_bytes=100,
                                                      base_stored_bytes=400, options=opts)}
    assert metrics["parameters"].value == 16 * 3 + 3
    assert metrics["stored_size"].value == 100 and not metrics["stored_size"].higher_is_better
    assert metrics["compression_ratio"].value == 4.0 and metrics["compression_ratio"].higher_is_better
    assert metrics["latency"].value == pytest.approx(500.0)
    assert metrics["latency"].unit == "ms" and metrics["latency"].headline
    assert "batch 4" in metrics["latency"].detail and "2 warm-up" in metrics["latency"].detail
    assert metrics["throughput"].value == pytest.approx(8.0)
    assert metrics["batch_size"].value == 4
    assert metrics["peak_memory"].value >= (16 * 3 + 3) * 4  # at least the weights
    assert len(calls) == 6  # two readings per timed run, none for warm-up


def test_cuda_timer_uses_events() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from modelbonsai.metrics import CudaEventTimer

    dev = torch.device("cuda")
    x = torch.randn(512, 512, device=dev)
    run: Callable[[], Any] = lambda: x @ x  # noqa: E731
    lat = measure_latency(run, batch_size=1, device=dev, warmup=2, repeats=5)
    assert lat.method == "cuda events" and lat.median_s > 0
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

    lat = measure_latency(fn, batch_size=2, device=dev, warmup=2, repeats=3)
    assert lat.method == "cuda events"
    assert calls[0] == 5
    assert lat.samples_s == pytest.approx([0.004, 0.002, 0.003])
    assert lat.median_s == pytest.approx(0.003)
    assert lat.throughput == pytest.approx(2 / 0.003)
    # warm-up: two untimed calls, then one sync; then per timed call the exact protocol
    one = ["sync", "new start", "new end", "record start", "call", "record end", "sync", "elapsed"]
    assert log == ["call", "call", "sync", *one * 3]
    assert isinstance(timer_for(dev), CudaEventTimer)
