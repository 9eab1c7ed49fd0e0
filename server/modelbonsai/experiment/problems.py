"""Collecting problems while walking the composed YAML (never stopping at the first)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .model import Problem, Range, Severity
from .yamlnodes import MappingNode, Node, ScalarNode, head_range, node_range, to_value


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`; did you mean 'x'?` when a close option exists, else ''."""
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{m[0]}'?" if m else ""


@dataclass
class Collector:
    path: Path
    text: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()

    def add(self, where: Node | Range, message: str, code: str, severity: Severity = "error") -> None:
        rng = where if isinstance(where, Range) else node_range(where)
        self.problems.append(Problem(self.path, rng, message, severity, code))

    def head(self, node: Node) -> Range:
        return head_range(node, self.lines)

    def misspelt(self, node: MappingNode, key: str) -> bool:
        """Whether `node` lacks `key` but has a key close to it (`opss:`): that key is reported as
        unknown with the suggestion, and saying `key` is missing too would be a second diagnostic
        for one typo."""
        keys = [to_value(k) for k, _ in node.value if isinstance(k, ScalarNode)]
        return key not in keys and any(
            isinstance(k, str) and difflib.get_close_matches(k, [key], n=1, cutoff=0.6) for k in keys
        )

    def mapping_items(
        self, node: MappingNode, allowed: Iterable[str] | None, where: str
    ) -> dict[str, tuple[Node, Node]]:
        """Key -> (key node, value node), reporting duplicate keys, non-string keys and (when
        `allowed` is given) unknown keys with a suggestion. Only the first of duplicates is kept."""
        allowed_list = list(allowed) if allowed is not None else None
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            key = to_value(k) if isinstance(k, ScalarNode) else None
            if not isinstance(key, str):
                self.add(k, f"keys in {where} must be names, got {k.tag.rsplit(':', 1)[-1]}", "wrong-type")
                continue
            if key in out:
                first = out[key][0].start_mark.line + 1
                self.add(k, f"'{key}' is given twice in {where} (first on line {first})", "duplicate-key")
                continue
            if allowed_list is not None and key not in allowed_list:
                self.add(k, f"unknown key '{key}' in {where}{did_you_mean(key, allowed_list)}", "unknown-key")
                continue
            out[key] = (k, v)
        return out
