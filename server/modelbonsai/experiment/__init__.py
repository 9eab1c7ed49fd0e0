"""Experiment files (`*.bonsai.yaml`): parsing with positions, validation, sweeps, JSON Schema.

The format is documented in :mod:`modelbonsai.experiment.keys` (`format_reference()`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from .starter import StarterError, guess_task_kind, starter_experiment, starter_path


# The schema module is imported lazily so `python -m modelbonsai.experiment.schema` runs cleanly.
def json_schema() -> dict[str, Any]:
    """The JSON Schema of the format (see :mod:`modelbonsai.experiment.schema`)."""
    from .schema import json_schema as generate

    return generate()


def write_schema(path: Path | None = None) -> Path:
    """Write the generated schema (default: the shipped package file); returns where."""
    from .schema import write_schema as write

    return write(path)


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
