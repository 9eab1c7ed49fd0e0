"""One typo, one diagnostic: what follows from a mistake (a sweep it left unswept, a child naming a
name the broken sweep would have made, a key it left missing) is not reported again, and a
"did you mean" never points a variant at itself or at its own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import parse, pos

# digits.bonsai.yaml's shape with the test ops: a sweep, children of the sweep, a grandchild of
# one of its models.
GOOD = """\
base: {load: model}
variants:
  - name: "global-{factor}"
    ops:
      - test.scale: {factor: [0.3, 0.5, 0.7], mode: a}
  - name: "global-{factor}-bn"
    from: "global-{factor}"
    ops:
      - test.noop: {}
  - name: global-0.7-bn-int8
    from: global-0.7-bn
    ops:
      - test.scale: {factor: 1.0}
  - name: other
    ops:
      - test.scale: {factor: 2.0}
"""

TYPOS = {
    # (the typo, its replacement), and the one problem it must give: code, the text it is at
    "param": (("{factor: [0.3", "{facter: [0.3"), "unknown-param", "facter"),
    "op": (("      - test.noop: {}", "      - test.nop: {}"), "unknown-op", "test.nop"),
    "parent of a sweep": (
        ('from: "global-{factor}"', 'from: "globl-{factor}"'),
        "unknown-parent",
        '"globl-{factor}"',
    ),
    "placeholder in a name": (
        ('- name: "global-{factor}"\n', '- name: "global-{facter}"\n'),
        "sweep",
        '"global-{facter}"',
    ),
    "plain parent": (("from: global-0.7-bn\n", "from: global-0.7-bm\n"), "unknown-parent", "global-0.7-bm"),
    "enum value": (("mode: a}", "mode: aa}"), "out-of-range", "aa"),
    "key": (
        ("    ops:\n      - test.scale: {factor: 2.0}", "    opss:\n      - test.scale: {factor: 2.0}"),
        "unknown-key",
        "opss",
    ),
    "name key": (("  - name: other", "  - nmae: other"), "unknown-key", "nmae"),
}


def test_the_good_file_has_no_problem(ws: Path) -> None:
    r = parse(GOOD, ws)
    assert r.problems == [] and r.experiment is not None
    assert len(r.experiment.variants) == 3 + 3 + 1 + 1


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_one_typo_gives_one_diagnostic(ws: Path, case: str) -> None:
    (old, new), code, where = TYPOS[case]
    assert GOOD.count(old) == 1
    text = GOOD.replace(old, new)
    r = parse(text, ws)
    assert [p.code for p in r.problems] == [code], [f"{p.code}: {p.message}" for p in r.problems]
    (p,) = r.problems
    assert (p.range.start_line, p.range.start_col) == pos(text, where)


def test_did_you_mean_points_at_the_likely_name_not_at_the_variant_itself(ws: Path) -> None:
    (p,) = parse(GOOD.replace("from: global-0.7-bn\n", "from: global-0.7-bm\n"), ws).problems
    assert "did you mean 'global-0.7-bn'?" in p.message
    # a sweep that did not expand: its child naming one of its models is not a second problem,
    # and the message never suggests the variant that names the parent (global-0.7-bn-int8)
    (q,) = parse(GOOD.replace("{factor: [0.3", "{facter: [0.3"), ws).problems
    assert "global-0.7-bn-int8" not in q.message


def test_the_variants_an_error_does_not_touch_still_parse(ws: Path) -> None:
    """The partial experiment keeps every variant the typo does not reach (their CodeLenses stay)."""
    r = parse(GOOD.replace("{factor: [0.3", "{facter: [0.3"), ws)
    assert r.partial is not None
    assert [v.name for v in r.partial.declared] == [
        "global-{factor}",
        "global-{factor}-bn",
        "global-0.7-bn-int8",
        "other",
    ]
    assert "other" in [v.name for v in r.partial.variants]


def test_a_syntax_error_blanks_only_its_variant_for_the_lenses(ws: Path) -> None:
    from modelbonsai.experiment.document import experiment_for_lenses

    # an unclosed brace in global-0.7-bn-int8: the parser gives up at the next item ("other")
    text = GOOD.replace("{factor: 1.0}", "{factor: 1.0")
    r = parse(text, ws)
    assert r.partial is None and [p.code for p in r.problems] == ["yaml-syntax"]
    exp = experiment_for_lenses(text, ws / "exp.bonsai.yaml", r)
    assert exp is not None
    names = [v.name for v in exp.declared]
    assert names == ["global-{factor}", "global-{factor}-bn", "other"]
    # on the lines they are on in the text being edited
    other = next(v for v in exp.declared if v.name == "other")
    assert other.range.start_line == pos(text, "- name: other")[0]
    # an error above the variants: nothing to salvage
    bad_top = GOOD.replace("base: {load: model}", "base: {load: model")
    assert experiment_for_lenses(bad_top, ws / "exp.bonsai.yaml", parse(bad_top, ws)) is None
