"""Comparisons of a base model with others: weights, activations, behaviour and tensor tiles.

- :mod:`.weights`     per-tensor statistics streamed from safetensors/artifacts, exact roll-up
- :mod:`.activations` propagated and isolated module outputs, divergence matrix, CKA
- :mod:`.behavior`    agreement, transitions, group deltas with intervals, KL, LM tokens
- :mod:`.tensors`     heatmap tiles (mean / max-abs pyramid) of a tensor or a difference
- :mod:`.api`         cached entry points (store cache, progress, cancellation)
- :mod:`.stats`, :mod:`.cka`, :mod:`.sources`, :mod:`.cache`, :mod:`.control` support

Results travel as :mod:`modelbonsai.wire` envelopes (`<Result>.wire()` gives kind/meta/tensors).
"""

from .activations import ActivationMemoryError, ActivationOptions, compare_activations
from .behavior import compare_behavior, lm_token_divergence
from .cache import MemoryCache, ResultCache
from .control import Cancelled, CompareError, Control
from .sources import FunctionSource, ModuleSource, SafetensorsSource, TensorSource, artifact_source
from .weights import compare_weights

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
