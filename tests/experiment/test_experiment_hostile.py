"""Hostile experiment files: no code of the workspace runs, nothing hangs, every problem is a
plain message at its place (issue 17, items 1, 3, 4, 5 and 7)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelbonsai.experiment import Document, ParseResult, completions_at, hover_at, parse_experiment, taskinfo
from support.locate import line_col

from .helpers import at, only

HEAD = "base:\n  name: toy\n  load: model\nvariants:\n  - name: a\n    ops:\n      - test.noop\n"


def _parse(text: str, root: Path) -> ParseResult:
    return parse_experiment(text, root / "exp.bonsai.yaml")


def _assert_no_internal(result: ParseResult) -> None:
    assert not [p for p in result.problems if p.code == "internal"], result.problems


# -- item 1: the editor never imports a user task ------------------------------------------------
def test_user_task_hover_and_completion_read_the_file_without_running_it(
    ws: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    far = tmp_path_factory.mktemp("far")
    trap = "from pathlib import Path\nPath(__file__).with_name('MARKER').write_text('ran')\n"
    (far / "evil_task.py").write_text(trap + 'class EvilTask:\n    """Scores the evil."""\n')
    for kind in (f"{far / 'evil_task.py'}:EvilTask", "evil_task.py:EvilTask"):
        (ws / "evil_task.py").write_text((far / "evil_task.py").read_text())
        text = f"task:\n  kind: {kind}\n  \n" + HEAD
        path = ws / "exp.bonsai.yaml"
        hover = hover_at(Document(text, path), 1, 10)
        assert hover is not None and "Scores the evil." in hover.markdown and "user task" in hover.markdown
        completions_at(Document(text, path), 2, 2, path)  # task keys: the kind's options
        hover_at(Document(text, path), 1, 4)  # the `kind` key
        _parse(text, ws)
        assert taskinfo.task_doc(kind) == "" and taskinfo.task_options(kind) is None
    assert not (far / "MARKER").exists() and not (ws / "MARKER").exists()


# -- item 3: alias bombs ------------------------------------------------------------------------
def _bomb(indent: str, width: int = 9, depth: int = 7) -> str:
    """~600 bytes that expand to width**depth values (4.8 million here)."""
    lines = [f"{indent}b0: &b0 [{', '.join(['x'] * width)}]"]
    lines += [f"{indent}b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["task", "base.args", "unknown op"])
def test_alias_bomb_is_refused_quickly_at_the_alias(ws: Path, where: str) -> None:
    if where == "task":
        text = "task:\n  kind: image-classification\n" + _bomb("  ") + HEAD
    elif where == "base.args":
        text = HEAD.replace(
            "  load: model\n", "  load: model\n  factory: build.py:build\n  args:\n" + _bomb("    ")
        )
    else:
        text = HEAD + "      - not.an.op:\n" + _bomb("          ")
    assert len(text) < 1000
    t0 = time.perf_counter()
    result = _parse(text, ws)
    assert time.perf_counter() - t0 < 2.0
    problem = only(result, "yaml-syntax")
    assert "aliases here expand to more than" in problem.message
    # At the alias that crosses the budget: an `*bN` token of the file.
    r = problem.range
    token = text.split("\n")[r.start_line][r.start_col : r.end_col]
    assert token.startswith("*b") and token in problem.message


def test_anchors_reused_within_the_budget_are_fine(ws: Path) -> None:
    shared = 'x-shared: &ex ["*norm*", "*.bias"]\n'
    variants = "".join(
        f"  - name: v{i}\n    ops:\n      - test.scale: {{factor: 1, exclude: *ex}}\n" for i in range(50)
    )
    result = _parse(
        shared.replace("x-shared", "seed: 1\nx") + "base:\n  load: model\nvariants:\n" + variants, ws
    )
    assert not [p for p in result.problems if p.code == "yaml-syntax"]


# -- item 4: a huge sweep is refused at once, at the sweep -------------------------------------
def test_huge_sweep_refused_early_at_the_sweep(ws: Path) -> None:
    n = 20_000
    text = HEAD.replace(
        "- test.noop", "- test.scale: {factor: [" + ", ".join(str(1 + i / n) for i in range(n)) + "]}"
    )
    t0 = time.perf_counter()
    result = _parse(text, ws)
    assert time.perf_counter() - t0 < 5.0  # the quadratic duplicate check took ~10 s here
    problem = only(result, "sweep")
    assert f"sweeps {n:,} values" in problem.message and "at most 2000" in problem.message
    assert at(problem)[:2] == line_col(text, "[1.0")


def test_sweep_duplicates_found_in_one_pass(ws: Path) -> None:
    text = HEAD.replace(
        "- test.noop", "- test.scale: {factor: [1, 2, 1.0, 3, 2], dims: [[1, 2], [3], [1, 2]]}"
    )
    result = _parse(text, ws)
    dups = [p for p in result.problems if "twice" in p.message]
    assert [(p.message.split("the value ")[1], at(p)[:2]) for p in dups] == [
        ("1.0 twice", line_col(text, "1.0")),
        ("2 twice", line_col(text, "2]")),
        ("[1, 2] twice", line_col(text, "[1, 2]]")),
    ]


# -- item 5: what used to be an internal error at 1:1 -------------------------------------------
def test_self_referencing_alias_is_positioned(ws: Path) -> None:
    text = HEAD.replace("- test.noop", "- test.scale: &me {factor: 1, dims: *me}")
    problem = only(_parse(text, ws), "yaml-syntax")
    assert "*me is inside the mapping it names" in problem.message
    assert at(problem) == (*line_col(text, "*me"), *line_col(text, "*me", offset=3))


def test_deep_nesting_is_positioned(ws: Path) -> None:
    text = HEAD.replace("- test.noop", "- test.scale: {factor: 1, dims: " + "[" * 500 + "]" * 500 + "}")
    problem = only(_parse(text, ws), "yaml-syntax")
    assert "levels deep" in problem.message
    assert at(problem)[:2] != (0, 0) and text.split("\n")[at(problem)[0]].strip().startswith("- test.scale")


def test_huge_integer_is_a_positioned_type_problem(ws: Path) -> None:
    digits = "9" * 5000
    result = _parse(f"seed: {digits}\n" + HEAD, ws)
    _assert_no_internal(result)
    problem = only(result, "wrong-type")
    assert at(problem)[:2] == (0, 6) and "a number too long to read (5,000 characters)" in problem.message
    assert len(problem.message) < 200


@pytest.mark.parametrize(
    "value", ["a" * 5000, "x/" + "b" * 300 + "/c", '"bad\\0name"', "~no-such-user-here/model"]
)
def test_unusable_paths_are_positioned(ws: Path, value: str) -> None:
    text = HEAD.replace("  load: model", f"  load: {value}")
    result = _parse(text, ws)
    _assert_no_internal(result)
    problem = only(result, "missing-path")
    assert at(problem)[:2] == (2, 8) and len(problem.message) < 300


def test_control_character_is_reported_where_it_is(ws: Path) -> None:
    text = HEAD.replace("name: a", "name: é\x1bx")
    problem = only(_parse(text, ws), "yaml-syntax")
    assert at(problem) == (*line_col(text, "\x1b"), *line_col(text, "\x1b", offset=1))
    assert "#x001b" in problem.message


# -- item 7: one naming rule for the base and the variants --------------------------------------
@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", "tab\\there"])
def test_base_name_follows_the_variant_name_rule(ws: Path, name: str) -> None:
    quoted = f'"{name}"'
    for text, what in (
        (HEAD.replace("name: toy", f"name: {quoted}"), "base"),
        (HEAD.replace("name: a", f"name: {quoted}"), "variant"),
    ):
        problem = only(_parse(text, ws), "wrong-type")
        assert problem.message.startswith(f"{what} name ") and "must not contain slashes" in problem.message
        assert at(problem)[:2] == line_col(text, quoted)
