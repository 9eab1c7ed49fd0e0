"""Importing this module registers every built-in op (see registry._ensure_builtins)."""

from . import (  # noqa: F401
    bn,
    calibrated,
    cast,
    dynamic,
    finetune,
    lowrank,
    palettize,
    prune,
    prune_calibrated,
    quantize,
    restore,
    structured,
)
