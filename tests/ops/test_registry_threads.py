"""The registry fills itself once, even when many threads ask for an op at the same moment."""

from __future__ import annotations

import subprocess
import sys


def test_first_lookup_from_many_threads_sees_every_builtin_op() -> None:
    # A fresh interpreter, so the built-in op modules are really imported on first use.
    code = """
import threading
from modelbonsai.ops import registry
barrier = threading.Barrier(8)
seen = []
def ask():
    barrier.wait()
    seen.append(registry.get_op("prune.magnitude") is not None)
threads = [threading.Thread(target=ask) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(seen), len(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["8", "8"]
