"""Keep the libraries' own chatter out of Bonsai's output.

Loading torch, transformers or torchao prints things a Bonsai user cannot act on: torchao's
"Failed to load …/_C_mxfp8.so" for every kernel library built for another GPU, torch's `_pytree`
deprecation warnings about torchao's enums, transformers' "Writing model shards" bars and advisory
warnings. On the CLI they bury the progress display and the one line that matters; in the
language server they fill the log. `quiet_libraries()` turns them off before the libraries are
imported (some read their settings from the environment at import) and again on the loggers
themselves (for a library imported already). With `BONSAI_DEBUG` set it does nothing, so the
noise is there when someone needs to see it.
"""

from __future__ import annotations

import logging
import os
import warnings

#: The third-party packages whose loggers are kept to errors and whose warnings are hidden.
#: Bonsai's own code never uses `warnings`; a warning attributed to it was raised by a library
#: it called (stacklevel points at the caller), so it is hidden too. A user's ops or task file
#: keeps its warnings.
LIBRARIES = (
    "torch",
    "torchao",
    "torchvision",
    "transformers",
    "huggingface_hub",
    "tokenizers",
    "safetensors",
    "accelerate",
    "sentence_transformers",
    "numba",
    "sklearn",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "executorch",
    "compressed_tensors",
    "PIL",
    "filelock",
    "urllib3",
    "modelbonsai",
)

#: Environment defaults the libraries read at import (a value the user set is kept).
ENVIRONMENT = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    # torch resets its own loggers to WARNING when it is imported unless TORCH_LOGS says
    # otherwise; "-torch" is ERROR for every torch logger (the `_pytree` warnings among them).
    "TORCH_LOGS": "-torch",
}


def debug_enabled() -> bool:
    return os.environ.get("BONSAI_DEBUG", "") not in ("", "0")


def quiet_libraries() -> None:
    """Silence the libraries' warnings, info logs and progress bars (not under BONSAI_DEBUG).
    Call it first thing in a process (the CLI, the language server, its worker): environment
    defaults only reach a library imported after it."""
    if debug_enabled():
        return
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for name in LIBRARIES:
        if name != "modelbonsai":
            logging.getLogger(name).setLevel(logging.ERROR)
    pattern = "|".join(LIBRARIES)
    warnings.filterwarnings("ignore", module=rf"({pattern})(\..*)?$")
