"""Experiment files (`*.bonsai.yaml`): parsing with positions, validation, sweeps, JSON Schema.

The format is documented in :mod:`modelbonsai.experiment.keys` (`format_reference()`).
"""

from __future__ import annotations

from .document import (
    CompletionItem,
    Document,
    Hover,
    NodeInfo,
    completions_at,
    definition_at,
    hover_at,
    node_at,
    pattern_matches,
)
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
from .patterns import check_patterns
from .schema import json_schema, write_schema
from .starter import StarterError, guess_task_kind, starter_experiment, starter_path

__all__ = [
    "BASE",
    "KEYS",
    "PROBLEM_CODES",
    "BaseSpec",
    "CompletionItem",
    "Document",
    "Experiment",
    "Hover",
    "KeyDoc",
    "NodeInfo",
    "OpCall",
    "ParseResult",
    "Problem",
    "Range",
    "StarterError",
    "TaskSpec",
    "Variant",
    "check_patterns",
    "completions_at",
    "definition_at",
    "format_reference",
    "guess_task_kind",
    "hover_at",
    "json_schema",
    "load_experiment",
    "node_at",
    "parse_experiment",
    "pattern_matches",
    "starter_experiment",
    "starter_path",
    "write_schema",
]
