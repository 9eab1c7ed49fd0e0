"""Fuzzing keeps the parser and the editor features honest (issue 17 item 9): seeded mutations of
the samples' experiment files (tests/support/fuzz.py) go through `parse_experiment`, the document
features (what is at a position, completion, hover, definition) and what the language server does
with their results (positions in the client's encoding, CodeLens, pattern checks). Every case
must finish in time, raise nothing, and report each problem at its place: never an internal
error, never a problem pinned to the start of the file for want of a position."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from modelbonsai.experiment import (
    Document,
    ParseResult,
    Range,
    check_patterns,
    completions_at,
    definition_at,
    hover_at,
    node_at,
    parse_experiment,
    pattern_matches,
)
from modelbonsai.lsp.features import experiment_lenses
from modelbonsai.lsp.positions import Columns
from support.fuzz import cases

#: Cases per run (~10 s on a busy 2-core machine), and the limit of each.
CASES = 1500
CASE_LIMIT_S = 3.0
POSITIONS = 4  # cursor positions per case for the document features
#: Parameter names of a pretend base model, for the pattern checks the server makes when trusted.
NAMES = [
    "0.weight",
    "0.bias",
    "conv1.weight",
    "bn1.weight",
    "fc.weight",
    "fc.bias",
    "encoder.layer.0.attn.q.weight",
]


class _NoLineage:
    """What `experiment_lenses` asks of the server: here there is no lineage (lenses still come)."""

    def folder_for(self, given: str | None = None, *, file: Path | None = None) -> Path:
        raise RuntimeError("no lineage in this test")


def _unplaced(result: ParseResult, text: str) -> list[str]:
    """Problems at 1:1 with nothing under them (the sign of a missing position), besides the one
    problem that really is about the whole (empty) file; and internal errors anywhere."""
    bad = []
    for p in result.problems:
        empty_file = p.code == "missing-required" and "file is empty" in p.message
        if p.code == "internal" or (p.range == Range(0, 0, 0, 0) and not empty_file):
            bad.append(f"{p.range} {p.code}: {p.message[:200]}")
    return bad


def _features(
    path: Path, text: str, result: ParseResult, rng: random.Random, loop: asyncio.AbstractEventLoop
) -> None:
    doc = Document(text, path)
    lines = text.split("\n")
    cols = Columns(text)
    for _ in range(POSITIONS):
        line = rng.randrange(len(lines) + 1)
        col = rng.randrange(len(lines[line]) + 2) if line < len(lines) else 0
        node_at(doc, line, col)
        for item in completions_at(doc, line, col, path):
            if item.range is not None:
                cols.range(item.range)
        hover = hover_at(doc, line, col, path)
        if hover is not None:
            cols.range(hover.range)
            if hover.pattern:
                pattern_matches(hover.pattern, NAMES)
        target = definition_at(doc, line, col, path)
        if target is not None:
            cols.range(target)
    for p in result.problems:  # what publishing the diagnostics does with each range
        cols.range(p.range)
    if result.experiment is not None:
        for p in check_patterns(result.experiment, NAMES):
            cols.range(p.range)
    server: Any = _NoLineage()
    loop.run_until_complete(experiment_lenses(server, path.as_uri(), result))


@pytest.mark.parametrize("seed", [17])
def test_fuzzed_experiment_files(seed: int) -> None:
    rng = random.Random(seed)
    loop = asyncio.new_event_loop()
    failures: list[str] = []
    try:
        # Warm up first (the op registry imports torch): the time limit is for the case alone.
        sample = next(cases(1, seed))[0]
        _features(
            sample,
            sample.read_text(encoding="utf-8"),
            parse_experiment(sample.read_text(), sample),
            rng,
            loop,
        )
        for i, (path, text) in enumerate(cases(CASES, seed)):
            t0 = time.perf_counter()
            try:
                result = parse_experiment(text, path)
                _features(path, text, result, rng, loop)
            except Exception as e:  # every exception is a finding
                failures.append(f"case {i} ({path.name}): {type(e).__name__}: {str(e)[:200]}")
                continue
            elapsed = time.perf_counter() - t0
            if elapsed > CASE_LIMIT_S:
                failures.append(f"case {i} ({path.name}): took {elapsed:.1f} s")
            failures += [f"case {i} ({path.name}): {bad}" for bad in _unplaced(result, text)]
    finally:
        loop.close()
    assert not failures, "\n".join(failures[:20])
