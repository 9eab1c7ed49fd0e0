"""Importing this module registers every built-in op (see registry._ensure_builtins)."""

from . import (  # noqa: F401
    awq,
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
    smoothquant,
    static_quant,
    structured,
)
