"""Sweeps expand into siblings with deterministic, documented names; families follow parents."""

from __future__ import annotations

from pathlib import Path

from modelbonsai.experiment import BASE, Experiment
from modelbonsai.experiment.keys import format_reference
from modelbonsai.experiment.sweeps import format_value

from .helpers import at, only, parse, pos

HEAD = "base: {name: tiny, load: model}\nvariants:\n"


def ok(text: str, ws: Path) -> Experiment:
    r = parse(text, ws)
    assert r.ok, [str(p) for p in r.problems]
    assert r.experiment is not None
    return r.experiment


def test_default_names_append_param_and_value(ws: Path) -> None:
    e = ok(HEAD + "  - name: s\n    ops:\n      - test.scale: {factor: [0.3, 0.5, 2]}\n", ws)
    assert [v.name for v in e.variants] == ["s-factor0.3", "s-factor0.5", "s-factor2"]
    assert [v.sweep_values for v in e.variants] == [{"factor": 0.3}, {"factor": 0.5}, {"factor": 2}]
    assert all(v.sweep_of == "s" and v.parent == BASE for v in e.variants)
    assert [v.ops[0].params["factor"] for v in e.variants] == [0.3, 0.5, 2]
    assert e.declared[0].ops[0].params["factor"] == [0.3, 0.5, 2] and e.declared[0].ops[0].swept == (
        "factor",
    )
    # every sibling points at the declaration
    assert len({v.name_range for v in e.variants}) == 1


def test_cartesian_product_in_written_order_and_templates(ws: Path) -> None:
    e = ok(
        HEAD
        + '  - name: "s-{mode}-{factor}"\n    ops:\n      - test.scale: {factor: [1, 2], mode: [a, b], flag: true}\n',
        ws,
    )
    assert [v.name for v in e.variants] == ["s-a-1", "s-b-1", "s-a-2", "s-b-2"]
    assert e.variants[1].sweep_values == {"factor": 1, "mode": "b"}
    assert e.variants[1].ops[0].params == {"factor": 1, "mode": "b", "flag": True}
    # a template naming only some swept keys: the others are appended
    e2 = ok(HEAD + '  - name: "s-{mode}"\n    ops:\n      - test.scale: {factor: [1, 2], mode: [a, b]}\n', ws)
    assert [v.name for v in e2.variants] == ["s-a-factor1", "s-b-factor1", "s-a-factor2", "s-b-factor2"]


def test_list_valued_params_are_values_and_lists_of_lists_sweep(ws: Path) -> None:
    e = ok(
        HEAD
        + '  - name: s\n    ops:\n      - test.scale: {factor: 1, include: ["a*", "b*"], dims: [0, 1]}\n',
        ws,
    )
    assert [v.name for v in e.variants] == ["s"] and e.variants[0].sweep_of is None
    e2 = ok(
        HEAD + '  - name: s\n    ops:\n      - test.scale: {factor: 1, include: [["a*", "b*"], ["c"]]}\n', ws
    )
    assert [v.name for v in e2.variants] == ["s-includea__b_", "s-includec"]
    assert e2.variants[0].ops[0].params["include"] == ["a*", "b*"]


def test_families_follow_swept_parents(ws: Path) -> None:
    text = HEAD + (
        '  - name: "p-{factor}"\n    ops:\n      - test.scale: {factor: [0.5, 1]}\n'
        "  - name: q\n    from: p-{factor}\n    ops:\n      - test.scale: {factor: 3, steps: [1, 2]}\n"
        '  - name: "r-{factor}"\n    from: "p-{factor}"\n    ops: [test.noop]\n'
        "  - name: one\n    from: p-0.5\n    ops: [test.noop]\n"
        "  - name: grand\n    from: q\n    ops: [test.noop]\n"
    )
    e = ok(text, ws)
    names = {v.name: v for v in e.variants}
    assert [v.name for v in e.variants if v.sweep_of == "q"] == [
        "q-factor0.5-steps1",
        "q-factor0.5-steps2",
        "q-factor1-steps1",
        "q-factor1-steps2",
    ]
    assert names["q-factor1-steps2"].parent == "p-1"
    assert names["q-factor1-steps2"].sweep_values == {"factor": 1, "steps": 2}
    assert names["q-factor1-steps2"].ops[0].params == {"factor": 3, "steps": 2}  # own factor is not swept
    assert names["r-0.5"].parent == "p-0.5" and names["r-1"].parent == "p-1"
    assert names["one"].parent == "p-0.5" and names["one"].sweep_values == {}  # one sibling: no family
    assert sorted(v.parent for v in e.variants if v.sweep_of == "grand") == sorted(
        v.name for v in e.variants if v.sweep_of == "q"
    )
    order = [v.name for v in e.variants]
    assert all(order.index(v.parent) < order.index(v.name) for v in e.variants if v.parent != BASE)


def test_expansion_is_stable(ws: Path) -> None:
    text = HEAD + "  - name: s\n    ops:\n      - test.scale: {factor: [0.3, 0.1], mode: [b, a]}\n"
    first = [v.name for v in ok(text, ws).variants]
    assert first == [v.name for v in ok(text, ws).variants]
    assert first == ["s-factor0.3-modeb", "s-factor0.3-modea", "s-factor0.1-modeb", "s-factor0.1-modea"]


def test_same_param_swept_in_two_ops_gets_qualified_key(ws: Path) -> None:
    e = ok(
        HEAD
        + "  - name: s\n    ops:\n      - test.scale: {factor: [1, 2]}\n      - test.scale: {factor: [3, 4]}\n",
        ws,
    )
    assert e.variants[0].sweep_values == {"factor": 1, "test.scale.factor": 3}
    assert e.variants[0].name == "s-factor1-test.scale.factor3"


def test_sweep_errors(ws: Path) -> None:
    text = HEAD + "  - name: s\n    ops:\n      - test.scale: {factor: 1, count: [1, 2]}\n"
    p = only(parse(text, ws), "sweep")
    assert at(p)[:2] == pos(text, "[1, 2]") and "cannot be swept" in p.message
    text = HEAD + "  - name: s\n    ops:\n      - test.scale: {factor: []}\n"
    assert "empty" in only(parse(text, ws), "sweep").message
    text = HEAD + "  - name: s\n    ops:\n      - test.scale: {factor: [1, 2, 1]}\n"
    p = only(parse(text, ws), "sweep")
    assert at(p)[:2] == (pos(text, "1]")[0], pos(text, "1]")[1]) and "twice" in p.message
    text = HEAD + '  - name: "s-{factr}"\n    ops:\n      - test.scale: {factor: [1, 2]}\n'
    p = only(parse(text, ws), "sweep")
    assert at(p)[:2] == pos(text, '"s-{factr}"') and "{factr}" in p.message and "factor" in p.message


def test_expanded_names_must_be_unique(ws: Path) -> None:
    text = HEAD + (
        "  - name: s-factor1\n    ops: [test.noop]\n"
        "  - name: s\n    ops:\n      - test.scale: {factor: [1, 2]}\n"
    )
    r = parse(text, ws)
    p = only(r, "duplicate-name")
    assert at(p)[:2] == pos(text, "s\n") and "s-factor1" in p.message
    # a template that drops a swept key still gets unique names (the key is appended)
    e = ok(HEAD + '  - name: "s"\n    ops:\n      - test.scale: {factor: [1, 2], mode: [a, b]}\n', ws)
    assert len({v.name for v in e.variants}) == 4


def test_value_formatting() -> None:
    assert format_value(0.5) == "0.5" and format_value(1e-05) == "1e-05" and format_value(True) == "true"
    assert format_value(["*.w", "a b"]) == "_.w_a_b" and format_value(8) == "8"


def test_reference_documents_every_key() -> None:
    from modelbonsai.experiment.keys import KEYS

    ref = format_reference()
    for k in KEYS:
        assert f"`{k.key}`" in ref, k
    assert "Sweeps" in ref and "Families" in ref


def test_deep_families_keep_unique_keys_and_the_total_is_capped(ws: Path) -> None:
    chain = "".join(
        f"  - name: v{i}\n    from: {'base' if i == 0 else f'v{i - 1}'}\n    ops:\n"
        "      - test.scale: {factor: [1, 2]}\n"
        for i in range(4)
    )
    e = ok(HEAD + chain, ws)
    assert len(e.variants) == 2 + 4 + 8 + 16
    last = e.variants[-1]
    assert list(last.sweep_values) == [
        "factor",
        "test.scale.factor",
        "test.scale.factor2",
        "test.scale.factor3",
    ]
    assert last.name == "v3-factor2-test.scale.factor2-test.scale.factor22-test.scale.factor32"
    big = "".join(
        f"  - name: w{i}\n    from: {'base' if i == 0 else f'w{i - 1}'}\n    ops:\n"
        "      - test.scale: {factor: [1, 2, 3, 4]}\n"
        for i in range(8)
    )
    r = parse(HEAD + big, ws)
    p = only(r, "sweep")
    assert "limit" in p.message and p.range.start_line == pos(HEAD + big, "name: w5")[0]


def test_readme_holds_the_reference_and_its_example_is_valid(ws: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "server" / "modelbonsai" / "experiment" / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert format_reference() in text
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    e = ok(example, ws)
    assert [v.name for v in e.variants] == ["prune-0.3", "prune-0.5", "int8-sparsity0.3", "int8-sparsity0.5"]
    assert [v.parent for v in e.variants[2:]] == ["prune-0.3", "prune-0.5"]
