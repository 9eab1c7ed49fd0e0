"""Valid experiment files parse into the typed objects, with their source ranges."""

from __future__ import annotations

from pathlib import Path

from modelbonsai.experiment import BASE, load_experiment

from .helpers import parse, pos

FULL = """\
seed: 7
device: cpu
base:
  name: tiny
  load: model
task:
  kind: text-classification
  data: data
  max_instances: 50
ops_from: [my_ops.py]
variants:
  - name: scaled
    from: base
    description: first try
    ops:
      - test.scale: {factor: 0.5, mode: b, include: ["*.weight"], dims: [0, 1]}
      - test.noop
  - name: child
    from: scaled
    seed: 3
    ops:
      - test.scale:
          factor: 2
          exclude: "*bias"
      - user.double: {any: 1}
"""


def test_full_file_parses_without_problems(ws: Path) -> None:
    r = parse(FULL, ws)
    assert r.problems == [] and r.ok
    e = r.experiment
    assert e is not None and e.seed == 7 and e.device == "cpu"
    assert e.base.name == "tiny" and e.base.load_kind == "hf-folder" and e.base.load_path == ws / "model"
    assert e.task is not None and e.task.kind == "text-classification"
    assert e.task.options == {"data": "data"} and e.task.max_instances == 50
    assert e.ops_from == [ws / "my_ops.py"]
    assert [v.name for v in e.variants] == ["scaled", "child"]
    scaled, child = e.variants
    assert scaled.parent == BASE and scaled.from_base and scaled.description == "first try"
    assert [o.name for o in scaled.ops] == ["test.scale", "test.noop"]
    assert scaled.ops[0].params == {"factor": 0.5, "mode": "b", "include": ["*.weight"], "dims": [0, 1]}
    assert scaled.ops[1].params == {}
    assert child.parent == "scaled" and child.seed == 3
    assert child.ops[0].params == {"factor": 2, "exclude": "*bias"}
    assert child.ops[1].name == "user.double"  # from ops_from, read without running the file
    assert e.parent_name(scaled) == "tiny" and e.parent_name(child) == "scaled"
    assert e.children("scaled") == [child]


def test_ranges_point_at_the_source(ws: Path) -> None:
    e = parse(FULL, ws).experiment
    assert e is not None
    scaled, child = e.variants
    line, col = pos(FULL, "scaled")
    assert (scaled.name_range.start_line, scaled.name_range.start_col) == (line, col)
    assert (scaled.name_range.end_line, scaled.name_range.end_col) == (line, col + len("scaled"))
    line, col = pos(FULL, "scaled", 1)
    assert child.parent_range is not None
    assert (child.parent_range.start_line, child.parent_range.start_col) == (line, col)
    op = scaled.ops[0]
    assert (op.name_range.start_line, op.name_range.start_col) == pos(FULL, "test.scale")
    vr = op.value_ranges["factor"]
    assert (vr.start_line, vr.start_col, vr.end_col) == (*pos(FULL, "0.5"), pos(FULL, "0.5")[1] + 3)
    kr = child.ops[0].key_ranges["exclude"]
    assert (kr.start_line, kr.start_col) == pos(FULL, "exclude")
    ir = op.item_ranges["include"][0]
    assert (ir.start_line, ir.start_col) == pos(FULL, '"*.weight"')
    assert scaled.range.start_line == pos(FULL, "name: scaled")[0]


def test_minimal_file_and_defaults(ws: Path) -> None:
    r = parse(
        """
        base: {load: build.py:build}
        variants:
          - name: a
            ops: [test.noop]
        """,
        ws,
    )
    assert r.ok, r.problems
    e = r.experiment
    assert e is not None and e.seed == 0 and e.device == "auto" and e.task is None
    assert e.base.load_kind == "file-function" and e.base.name == "build"
    assert e.variants[0].parent == BASE


def test_load_forms(ws: Path) -> None:
    (ws / "mypkg").mkdir()
    for load, factory, kind in [
        ("weights.safetensors", "build.py:build", "safetensors"),
        ("mypkg.models:make", None, "module-function"),
        ("json.decoder:JSONDecoder", None, "module-function"),  # an installed module
        ("model", None, "hf-folder"),
        (str(ws / "model"), None, "hf-folder"),
    ]:
        extra = f"\n  factory: {factory}" if factory else ""
        r = parse(f"base:\n  load: {load}{extra}\nvariants:\n  - name: a\n    ops: [test.noop]\n", ws)
        assert r.ok, (load, r.problems)
        assert r.experiment is not None and r.experiment.base.load_kind == kind


def test_base_args_and_dtype(ws: Path) -> None:
    r = parse(
        "base: {load: build.py:build, args: {width: 8}, dtype: bfloat16}\nvariants:\n"
        "  - name: a\n    ops: [test.noop]\n",
        ws,
    )
    assert r.ok, r.problems
    assert r.experiment is not None and r.experiment.base.args == {"width": 8}
    assert r.experiment.base.dtype == "bfloat16"


def test_from_base_by_its_name_and_forward_references(ws: Path) -> None:
    r = parse(
        """
        base: {name: tiny, load: model}
        variants:
          - name: late
            from: early
            ops: [test.noop]
          - name: early
            from: tiny
            ops: [test.noop]
        """,
        ws,
    )
    assert r.ok, r.problems
    e = r.experiment
    assert e is not None
    # parents before children
    assert [v.name for v in e.variants] == ["early", "late"]
    assert e.variant("early").parent == BASE  # type: ignore[union-attr]
    assert [v.name for v in e.declared] == ["late", "early"]
    assert e.declared[1].parent == BASE  # `from: tiny` names the base


def test_load_experiment_reads_the_file_and_reports_a_missing_one(ws: Path) -> None:
    f = ws / "x.bonsai.yaml"
    f.write_text("base: {load: model}\nvariants:\n  - name: a\n    ops: [test.noop]\n")
    assert load_experiment(f).ok
    r = load_experiment(ws / "nope.bonsai.yaml")
    assert r.experiment is None and r.problems[0].code == "missing-path"


def test_numbers_written_with_exponents_are_numbers(ws: Path) -> None:
    r = parse(
        "base: {load: model}\nvariants:\n  - name: a\n    ops:\n      - test.scale: {factor: 1e-3}\n", ws
    )
    assert r.ok, r.problems
    assert r.experiment is not None and r.experiment.variants[0].ops[0].params["factor"] == 0.001


def test_builtin_ops_validate(ws: Path) -> None:
    """The real ops from the registry, as in DESIGN.md's sketch."""
    r = parse(
        """
        base: {name: digits-cnn, load: model}
        task: {kind: image-classification, data: data}
        variants:
          - name: prune-50
            from: base
            ops:
              - prune.magnitude: {sparsity: 0.5, scope: global, exclude: ["*norm*", "*.bias"]}
          - name: prune-50-int8
            from: prune-50
            ops:
              - quantize.weights: {bits: 8, granularity: channel}
        """,
        ws,
    )
    assert r.ok, r.problems
    bad = parse(
        """
        base: {load: model}
        variants:
          - name: p
            ops:
              - prune.magnitude: {sparsity: 1.5}
              - quantize.weights: {bits: 1}
        """,
        ws,
    )
    assert sorted(p.code for p in bad.problems) == ["out-of-range", "out-of-range"]


def test_numeric_names_are_taken_as_written(ws: Path) -> None:
    r = parse(
        "base: {load: model}\nvariants:\n  - name: 50\n    ops: [test.noop]\n"
        "  - name: 0.50\n    from: 50\n    ops: [test.noop]\n",
        ws,
    )
    assert r.ok, r.problems
    assert r.experiment is not None and [v.name for v in r.experiment.variants] == ["50", "0.50"]
    assert r.experiment.variants[1].parent == "50"
