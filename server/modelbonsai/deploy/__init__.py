"""Deploying a model: exports that other runtimes load, and those runtimes' own numbers.

- `targets`: the deploy targets' facts (names, formats, packages, metric names), torch-free: the
  experiment file's `deploy:` key and the CLI read them without importing torch.
- `flat`, `layers`: a model's call as tensors in and out; which layer keeps it from exporting.
- `onnx`, `executorch`: the exporters and the runtimes that run their files on the CPU.
- `session`: one model measured in its targets during a run (size, parity, latency).
- `exporter`: `bonsai export --format onnx|executorch`.
- `hf_compressed`, `hf_structured`: Hugging Face folders of compressed models (compressed-tensors,
  new shapes).

Nothing here imports torch on import of the package.
"""

from __future__ import annotations

from .targets import DEFAULT_TOLERANCE, FLAG_METRIC, INSTALL_HINT, TARGETS, Target, target_names

__all__ = ["DEFAULT_TOLERANCE", "FLAG_METRIC", "INSTALL_HINT", "TARGETS", "Target", "target_names"]
