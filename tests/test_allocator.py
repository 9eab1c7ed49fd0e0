"""Bonsai's processes keep freed memory: a batch-sized allocation freed and made again does not
fault its pages in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelbonsai import allocator

PROBE = """
import resource, sys
import numpy as np
from modelbonsai.allocator import keep_freed_memory
limits = {"keep": None, "huge": 1 << 40, "tiny": 1}
kept = keep_freed_memory(limits[sys.argv[1]]) if sys.argv[1] in limits else 0
def batch():  # like a batch of held activations: many tensors of a few MB, all freed at the end
    held = [np.ones(1 << 20, np.float32) for _ in range(48)]  # 192 MB
    del held
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    batch()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout
    kept, faults = out.split()
    return int(kept), int(faults)


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_freed_batches_are_reused_without_page_faults() -> None:
    kept, with_keep = _faults("keep")
    assert kept >= 2 * allocator.MMAP_THRESHOLD
    _, without = _faults("default")
    pages = 3 * 192 * (1 << 20) // 4096
    assert without > pages // 2  # the default allocator gave the memory back and faulted it in again
    assert with_keep < pages // 50


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_limit_is_clamped() -> None:  # (in a child process: the setting is for the whole process)
    assert _faults("huge")[0] == 2**31 - 1
    assert _faults("tiny")[0] == 2 * allocator.MMAP_THRESHOLD
