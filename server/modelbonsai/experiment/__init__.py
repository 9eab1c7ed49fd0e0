"""Experiment files (`*.bonsai.yaml`): parsing with positions, validation, sweeps, JSON Schema.

The format is documented in :mod:`modelbonsai.experiment.keys` (`format_reference()`).
"""

from __future__ import annotations

from .keys import KEYS, KeyDoc, format_reference
from .model import (
    BASE,
    PROBLEM_CODES,
    BaseSpec,
    Experiment,
    OpCall,
    ParseResult,
    Problem,
    Range,
    TaskSpec,
    Variant,
)
from .parse import load_experiment, parse_experiment

__all__ = [
    "BASE",
    "KEYS",
    "PROBLEM_CODES",
    "BaseSpec",
    "Experiment",
    "KeyDoc",
    "OpCall",
    "ParseResult",
    "Problem",
    "Range",
    "TaskSpec",
    "Variant",
    "format_reference",
    "load_experiment",
    "parse_experiment",
]
