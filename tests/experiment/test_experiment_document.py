"""Completion, hover and go-to-definition at positions, on valid and half-typed files."""

from __future__ import annotations

from pathlib import Path

from modelbonsai.experiment import (
    Document,
    check_patterns,
    completions_at,
    definition_at,
    hover_at,
    node_at,
    pattern_matches,
)

from .helpers import parse, pos

TEXT = """\
seed: 0
base:
  name: tiny
  load: model
task:
  kind: text-classification
  data: data
variants:
  - name: "p-{factor}"
    from: base
    ops:
      - test.scale: {factor: [0.5, 1], mode: b, exclude: ["*bias", "*norm*"]}
  - name: child
    from: p-0.5
    ops:
      - test.scale:
          factor: 2
          include:
            - "*.weight"
      - test.noop
  - name: fam
    from: p-{factor}
    ops: [test.noop]
"""


def at(needle: str, nth: int = 0, offset: int = 1) -> tuple[int, int]:
    line, col = pos(TEXT, needle, nth)
    return line, col + offset


def labels(text: str, line: int, col: int) -> list[str]:
    return [i.label for i in completions_at(text, line, col)]


def test_node_at_names_what_the_cursor_is_on() -> None:
    cases = {
        at("seed"): ("top-key", None, None),
        at("load"): ("base-key", None, None),
        at("text-classification", offset=3): ("task-kind", None, None),
        at("test.scale", offset=4): ("op-name", "test.scale", None),
        at("factor:", offset=2): ("param-key", "test.scale", "factor"),
        at("0.5", offset=1): ("param-value", "test.scale", "factor"),
        at("b,", offset=0): ("param-value", "test.scale", "mode"),
        at("*bias"): ("pattern", "test.scale", "exclude"),
        at("*norm*", offset=2): ("pattern", "test.scale", "exclude"),
        at("p-0.5", offset=2): ("from-value", None, None),
        at("factor: 2"): ("param-key", "test.scale", "factor"),
        at("*.weight"): ("pattern", "test.scale", "include"),
        at("test.noop"): ("op-name", "test.noop", None),
        at("test.noop]"): ("op-name", "test.noop", None),
    }
    for (line, col), (kind, op, param) in cases.items():
        info = node_at(TEXT, line, col)
        assert (info.kind, info.op, info.param) == (kind, op, param), (line, col, info)
    info = node_at(TEXT, *at("*norm*", offset=2))
    assert info.text == "*norm*" and info.prefix == "*n" and info.variant == "p-{factor}"
    line, col = pos(TEXT, '"*norm*"')
    assert (info.range.start_line, info.range.start_col, info.range.end_col) == (line, col, col + 8)
    assert node_at(TEXT, *at("test.noop")).variant == "child"


def test_nested_flow_collections() -> None:
    head = "variants:\n  - name: a\n    ops: [{"
    for tail, expected in [
        ("test.sc", ("op-name", "test.sc", None)),
        ("test.scale: {factor: 1, mo", ("param-key", "test.scale", "mo")),
        ("test.scale: {exclude: ['*no", ("pattern", "test.scale", "exclude")),
        ("test.scale: {factor: [1, 2", ("param-value", "test.scale", "factor")),
    ]:
        text = head + tail
        info = node_at(text, 2, len(text.split("\n")[-1]))
        assert (info.kind, info.op, info.param) == expected, tail


def test_completions_of_keys_ops_params_and_values() -> None:
    assert labels("", 0, 0) == [
        "seed",
        "device",
        "base",
        "task",
        "ops_from",
        "variants",
        "deploy",
        "scan",
        "mlflow",
    ]
    inserts = {i.label: i.insert_text for i in completions_at("", 0, 0)}
    assert (
        inserts["seed"] == "seed: "
        and inserts["base"] == "base:\n  "
        and inserts["variants"].endswith("- name: ")
    )
    assert "seed" not in labels(TEXT + "\n", len(TEXT.splitlines()), 0)  # already present
    assert labels("base:\n  ", 1, 2) == ["name", "load", "factory", "args", "dtype", "deploy"]
    half = "base:\n  load: model\nvariants:\n  - name: a\n    ops:\n      - test.sc"
    items = completions_at(half, 5, 15)
    scale = next(i for i in items if i.label == "test.scale")
    assert (
        scale.kind == "op"
        and scale.insert_text == "test.scale: {}"
        and "**test.scale**" in scale.documentation
    )
    assert scale.range is not None and (scale.range.start_col, scale.range.end_col) == (8, 15)
    assert {"test.noop", "prune.magnitude", "quantize.weights"} <= {i.label for i in items}
    flow = "variants:\n  - name: a\n    ops:\n      - test.scale: {factor: 1, mo"
    params = completions_at(flow, 3, 39)
    assert [i.label for i in params] == ["mode", "flag", "steps", "count", "include", "exclude", "dims"]
    assert params[0].kind == "param" and params[0].insert_text == "mode: " and "a | b" in params[0].detail
    block = "variants:\n  - name: a\n    ops:\n      - test.scale:\n          factor: 1\n          "
    assert "factor" not in labels(block, 5, 10) and "mode" in labels(block, 5, 10)
    assert labels("variants:\n  - name: a\n    ops:\n      - test.scale: {mode: ", 3, 34) == ["a", "b"]
    assert labels("variants:\n  - name: a\n    ops:\n      - test.scale: {flag: t", 3, 35) == [
        "true",
        "false",
    ]
    assert labels("device: c", 0, 9) == ["auto", "cpu", "cuda", "mps"]
    assert labels("base:\n  dtype: ", 1, 9) == ["float32", "float16", "bfloat16"]
    assert "text-classification" in labels("task:\n  kind: ", 1, 8)
    assert labels("variants:\n  - name: a\n    ops: []\n    ", 3, 4) == [
        "from",
        "description",
        "seed",
        "deploy",
    ]
    task_keys = labels("task:\n  kind: text-classification\n  ", 2, 2)
    assert "data" in task_keys and "max_length" in task_keys and "kind" not in task_keys


def test_parent_completion_lists_base_variants_and_sweep_siblings() -> None:
    line = TEXT.splitlines().index("    from: p-0.5")
    got = labels(TEXT, line, len("    from: "))
    assert got[:4] == ["base", "p-{factor}", "fam", "p-0.5"] and "p-1" in got and "child" not in got


def test_hover() -> None:
    h = hover_at(TEXT, *at("test.scale", offset=3))
    assert h is not None and h.markdown.startswith("**test.scale**") and h.op == "test.scale"
    h = hover_at(TEXT, *at("mode:"))
    assert h is not None and "**mode**" in h.markdown and "how" in h.markdown and h.param == "mode"
    h = hover_at(TEXT, *at("*bias"))
    assert h is not None and h.pattern == "*bias" and h.param == "exclude"
    h = hover_at(TEXT, *at("*.weight"))
    assert h is not None and h.pattern == "*.weight"
    h = hover_at(TEXT, *at("load"))
    assert h is not None and h.markdown.startswith("**base.load**")
    h = hover_at(TEXT, *at("from: base"))
    assert h is not None and "**variant.from**" in h.markdown
    h = hover_at(TEXT, *at("p-{factor}"))
    assert h is not None and "makes **2** variants" in h.markdown and "`p-1` from `base`" in h.markdown
    h = hover_at(TEXT, *at("fam"))
    assert h is not None and "`fam-factor0.5` from `p-0.5`" in h.markdown
    assert hover_at(TEXT, *at("child")) is None  # not swept: nothing to add
    bad = "variants:\n  - name: a\n    ops:\n      - test.scal: {}\n"
    h = hover_at(bad, 3, 10)
    assert h is not None and "Did you mean `test.scale`" in h.markdown
    assert hover_at(TEXT, 0, 6) is None  # a plain value has no documentation


def test_definition_from_parent_to_its_declaration() -> None:
    lines = TEXT.splitlines()
    target = definition_at(TEXT, lines.index("    from: p-0.5"), 12)
    name_line = lines.index('  - name: "p-{factor}"')
    assert target is not None and (target.start_line, target.start_col) == (name_line, 10)
    fam = definition_at(TEXT, lines.index("    from: p-{factor}"), 12)
    assert fam == target
    base = definition_at(TEXT, lines.index("    from: base"), 12)
    assert base is not None and (base.start_line, base.start_col, base.end_col) == (1, 0, 4)
    assert definition_at(TEXT, 0, 1) is None
    # in a file that does not parse, a plain name still resolves
    broken = "variants:\n  - name: a\n    ops: [x\n  - name: b\n    from: a\n"
    d = definition_at(broken, 4, 11)
    assert d is not None and (d.start_line, d.start_col) == (1, 10)


def test_document_object_is_reusable() -> None:
    doc = Document(TEXT)
    assert node_at(doc, *at("seed")).kind == "top-key"
    assert completions_at(doc, 0, 0)


def test_pattern_matches_and_check_patterns(ws: Path) -> None:
    names = ["conv.weight", "conv.bias", "norm.weight", "fc.weight", "fc.bias"]
    assert pattern_matches("*bias", names) == (2, ["conv.bias", "fc.bias"])
    assert pattern_matches(["fc.*", "nothing"], names, first=1) == (2, ["fc.weight"])
    e = parse(TEXT.replace("from: p-0.5", "from: base"), ws).partial
    assert e is not None
    problems = check_patterns(e, names)
    # "*.weight" and "*bias" match; "*norm*" matches norm.weight; nothing to report
    assert problems == []
    problems = check_patterns(e, ["a.weight"])
    assert [(p.code, p.severity) for p in problems] == [("pattern-no-match", "warning")] * 2
    line, col = pos(TEXT, '"*bias"')
    assert (problems[0].range.start_line, problems[0].range.start_col) == (line, col)
    assert "'*bias'" in problems[0].message
