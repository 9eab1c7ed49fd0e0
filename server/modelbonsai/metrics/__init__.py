"""Efficiency metrics: parameters, non-zeros, stored size, compression ratio, latency, memory."""

from .efficiency import (
    ClockTimer,
    CudaEventTimer,
    EfficiencyOptions,
    Latency,
    PeakMemory,
    Timer,
    efficiency_metrics,
    measure_latency,
    measure_peak_memory,
    nonzero_count,
    parameter_count,
    speed_metrics,
    timer_for,
)

__all__ = [
    "ClockTimer",
    "CudaEventTimer",
    "EfficiencyOptions",
    "Latency",
    "PeakMemory",
    "Timer",
    "efficiency_metrics",
    "measure_latency",
    "measure_peak_memory",
    "nonzero_count",
    "parameter_count",
    "speed_metrics",
    "timer_for",
]
