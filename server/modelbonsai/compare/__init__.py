"""Comparisons of a base model with others: weights, activations, behaviour and tensor tiles.

- :mod:`.weights`     per-tensor statistics streamed from safetensors/artifacts, exact roll-up
- :mod:`.activations` propagated and isolated module outputs, divergence matrix, CKA
- :mod:`.behavior`    agreement, transitions, group deltas with intervals, KL, LM tokens
- :mod:`.tensors`     heatmap tiles (mean / max-abs pyramid) of a tensor or a difference
- :mod:`.api`         cached entry points (store cache, progress, cancellation)
- :mod:`.stats`, :mod:`.cka`, :mod:`.sources`, :mod:`.cache`, :mod:`.control` support

Results travel as :mod:`modelbonsai.wire` envelopes (`<Result>.wire()` gives kind/meta/tensors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .activations import ActivationMemoryError, ActivationOptions, compare_activations
    from .behavior import compare_behavior, lm_token_divergence
    from .cache import MemoryCache, ResultCache
    from .control import Cancelled, CompareError, Control
    from .sources import FunctionSource, ModuleSource, SafetensorsSource, TensorSource, artifact_source
    from .weights import compare_weights

# Names are imported on first use (PEP 562): a weights comparison does not load the activation
# and behaviour modules, nor torch, which they need.
_WHERE = {
    "ActivationMemoryError": "activations", "ActivationOptions": "activations", "compare_activations": "activations",
    "compare_behavior": "behavior", "lm_token_divergence": "behavior",
    "MemoryCache": "cache", "ResultCache": "cache",
    "Cancelled": "control", "CompareError": "control", "Control": "control",
    "FunctionSource": "sources", "ModuleSource": "sources", "SafetensorsSource": "sources",
    "TensorSource": "sources", "artifact_source": "sources",
    "compare_weights": "weights",
}  # fmt: skip

__all__ = [
    "ActivationMemoryError",
    "ActivationOptions",
    "Cancelled",
    "CompareError",
    "Control",
    "FunctionSource",
    "MemoryCache",
    "ModuleSource",
    "ResultCache",
    "SafetensorsSource",
    "TensorSource",
    "artifact_source",
    "compare_activations",
    "compare_behavior",
    "compare_weights",
    "lm_token_divergence",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value
