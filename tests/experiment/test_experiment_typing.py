"""While the user types, every prefix of a file parses without raising, and every editor
feature answers at every position."""

from __future__ import annotations

import time
from pathlib import Path

from modelbonsai.experiment import (
    Document,
    completions_at,
    definition_at,
    hover_at,
    node_at,
    parse_experiment,
)

from .test_experiment_document import TEXT


def test_every_prefix_parses_and_completes(ws: Path) -> None:
    start = time.perf_counter()
    path = ws / "exp.bonsai.yaml"
    for cut in range(0, len(TEXT) + 1, 3):
        text = TEXT[:cut]
        r = parse_experiment(text, path)
        assert r.ok or r.problems, cut
        lines = text.split("\n")
        line, col = len(lines) - 1, len(lines[-1])
        completions_at(text, line, col)
        hover_at(text, line, col)
    assert time.perf_counter() - start < 20


def test_every_position_answers() -> None:
    doc = Document(TEXT)
    for line, s in enumerate(TEXT.splitlines()):
        for col in range(len(s) + 1):
            info = node_at(doc, line, col)
            assert info.range.start_line == line or info.kind == "none"
            completions_at(doc, line, col)
            hover_at(doc, line, col)
            definition_at(doc, line, col)
