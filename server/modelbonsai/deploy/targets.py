"""The deploy targets: which runtimes Bonsai exports a model to and measures it in (torch-free).

This table is the one place for their facts: the experiment file's `deploy:` key (validation,
completion, hover, the JSON Schema), the export command's formats and the metric names all read it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

#: What `pip install` brings every runtime (pyproject's `deploy` extra).
INSTALL_HINT = "pip install 'modelbonsai[deploy]'"

#: A runtime's outputs may differ from the eager model's by at most this much, relative to the
#: largest magnitude of the eager outputs (max|a - b| / max(1, max|a|)): float32 kernels that
#: sum in another order differ by ~1e-6 on the samples; 1e-3 leaves room for deeper models while
#: still catching a wrong weight, a dropped op or a different quantization.
DEFAULT_TOLERANCE = 1e-3
#: ... and their top-1 choices (argmax over the last dimension) must agree on at least this share
#: of the evaluation instances' positions.
MIN_AGREEMENT = 0.99

#: The metric a model carries when a runtime's outputs are beyond the tolerance: its value is how
#: many targets, its detail which and by how much (shown by `bonsai show`, the tree, the table).
FLAG_METRIC = "deploy_parity_flags"


@dataclass(frozen=True)
class Target:
    name: str  # as written under `deploy:`
    format: str  # `bonsai export --format`
    suffix: str  # the exported file's
    packages: tuple[str, ...]  # import names it needs
    doc: str

    def missing(self) -> list[str]:
        """The packages this target needs that are not installed (found without importing)."""
        out = []
        for p in self.packages:
            try:
                found = importlib.util.find_spec(p) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(p)
        return out

    def metric(self, what: str) -> str:
        """`onnxruntime_latency`, `executorch_size`, ..."""
        return f"{self.name}_{what}"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "onnxruntime",
            "onnx",
            ".onnx",
            ("onnx", "onnxruntime", "onnxscript"),
            "ONNX (torch.onnx's dynamo exporter, opset 21) run by ONNX Runtime on the CPU. Weights "
            "quantized to 8 bits or fewer are stored as integers and dequantized in the graph "
            "(DequantizeLinear: int8, or packed uint4 at 4 bits and fewer).",
        ),
        Target(
            "executorch",
            "executorch",
            ".pte",
            ("executorch",),
            "An ExecuTorch program (`.pte`) with the XNNPACK delegate where it applies, run by "
            "`executorch.runtime` on the CPU.",
        ),
    )
}

#: The metrics each target adds to a model (name suffix, unit, higher is better, meaning).
METRICS: tuple[tuple[str, str, bool, str], ...] = (
    ("latency", "ms", False, "the runtime's latency, measured interleaved with the eager model's"),
    ("speedup", "x", True, "eager latency / the runtime's, from the same rounds"),
    ("size", "B", False, "bytes of the exported file"),
    ("max_abs_diff", "", False, "largest |runtime - eager| over the evaluation instances' outputs"),
    ("agreement", "%", True, "top-1 agreement of the runtime's outputs with the eager model's"),
)


def target_names() -> list[str]:
    return list(TARGETS)
