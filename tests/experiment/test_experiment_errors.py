"""Every kind of problem, each at its exact place; several in one file are all reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbonsai.experiment import PROBLEM_CODES

from .helpers import at, only, parse, pos

HEAD = "base: {load: model}\nvariants:\n"


def span(text: str, needle: str, nth: int = 0, length: int | None = None) -> tuple[int, int, int, int]:
    """The range of the nth `needle` in text (or of its first `length` characters)."""
    line, col = pos(text, needle, nth)
    return line, col, line, col + (len(needle) if length is None else length)


def test_yaml_syntax_error_at_the_parser_mark(ws: Path) -> None:
    text = HEAD + "  - name: a\n    ops: [test.noop\n  - name: b\n"
    r = parse(text, ws)
    assert r.experiment is None and r.partial is None
    p = only(r, "yaml-syntax")
    assert p.message.startswith("YAML syntax error")
    # where the parser gave up (the ':' of the next item), naming where the list opened
    assert at(p) == (4, 8, 4, 9)
    assert "not closed" in p.message and "opened on line 4" in p.message
    text2 = "base:\n  load: model\n bad: 1\n"
    p2 = only(parse(text2, ws), "yaml-syntax")
    assert at(p2) == (2, 1, 2, 5) and "indentation" in p2.message
    p3 = only(parse('base: {load: "model}\nvariants: []\n', ws), "yaml-syntax")
    assert at(p3)[:2] == (0, 13) and "not closed" in p3.message  # at the opening quote


def test_tab_and_empty_and_non_mapping_files(ws: Path) -> None:
    assert only(parse("", ws), "missing-required").range.start_line == 0
    assert only(parse("- a\n- b\n", ws), "wrong-type").range.start_line == 0
    assert parse("base:\n\tload: model\n", ws).problems[0].code == "yaml-syntax"


def test_unknown_key_at_the_key_with_suggestion(ws: Path) -> None:
    text = "seed: 1\ndevise: cpu\n" + HEAD + "  - name: a\n    form: base\n    ops: [test.noop]\n"
    r = parse(text, ws)
    codes = [p for p in r.problems if p.code == "unknown-key"]
    assert [at(p) for p in codes] == [span(text, "devise"), span(text, "form")]
    assert "did you mean 'device'?" in codes[0].message
    assert "did you mean 'from'?" in codes[1].message


def test_unknown_op_with_suggestion(ws: Path) -> None:
    text = HEAD + "  - name: a\n    ops:\n      - test.scael: {factor: 1}\n"
    p = only(parse(text, ws), "unknown-op")
    assert at(p) == span(text, "test.scael")
    assert "did you mean 'test.scale'?" in p.message


def test_unknown_param_with_suggestion(ws: Path) -> None:
    text = HEAD + "  - name: a\n    ops:\n      - test.scale: {factor: 1, mdoe: a}\n"
    p = only(parse(text, ws), "unknown-param")
    assert at(p) == span(text, "mdoe")
    assert "did you mean 'mode'?" in p.message


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("'x'", "wrong-type"),
        ("true", "wrong-type"),
        ("[1, {a: 1}]", "wrong-type"),
        ("0", "out-of-range"),  # exclusive minimum
        ("10.5", "out-of-range"),
    ],
)
def test_bad_values_at_the_value(ws: Path, value: str, code: str) -> None:
    text = HEAD + f"  - name: a\n    ops:\n      - test.scale: {{factor: {value}}}\n"
    p = only(parse(text, ws), code)
    if value.startswith("["):
        assert at(p) == span(text, "{a: 1}")  # the bad sweep item, not the whole list
    else:
        assert at(p) == span(text, value)
    assert "factor" in p.message and "test.scale" in p.message


def test_enum_int_bool_and_list_types(ws: Path) -> None:
    text = HEAD + (
        "  - name: a\n    ops:\n"
        "      - test.scale: {factor: 1, mode: c, steps: 2.5, flag: maybe, dims: [1, x], include: 5}\n"
    )
    r = parse(text, ws)
    got = {(p.code, at(p)) for p in r.problems}
    assert got == {
        ("out-of-range", span(text, "c,", length=1)),
        ("wrong-type", span(text, "2.5")),
        ("wrong-type", span(text, "maybe")),
        ("wrong-type", span(text, "[1, x]")),
        ("wrong-type", span(text, "5}", length=1)),
    }


def test_missing_required(ws: Path) -> None:
    text = "variants:\n  - name: a\n    ops:\n      - test.scale: {mode: a}\n  - from: base\n    ops: [test.noop]\n"
    r = parse(text, ws)
    missing = sorted((at(p), p.message) for p in r.problems if p.code == "missing-required")
    assert len(missing) == 3
    assert missing[0][0][0] == 0 and "base" in missing[0][1]  # the file lacks base:
    assert missing[1][0] == span(text, "test.scale") and "factor" in missing[1][1]
    assert missing[2][0][:2] == pos(text, "from: base") and "name" in missing[2][1]
    r2 = parse("base: {name: x}\nvariants:\n  - name: a\n", ws)
    assert {p.code for p in r2.problems} == {"missing-required"}
    assert any("load" in p.message for p in r2.problems) and any("ops" in p.message for p in r2.problems)


def test_unknown_parent(ws: Path) -> None:
    text = (
        HEAD + "  - name: alpha\n    ops: [test.noop]\n  - name: b\n    from: alpah\n    ops: [test.noop]\n"
    )
    p = only(parse(text, ws), "unknown-parent")
    assert at(p) == span(text, "alpah")
    assert "did you mean 'alpha'?" in p.message


def test_cycle_reported_at_each_from(ws: Path) -> None:
    text = HEAD + (
        "  - name: a\n    from: c\n    ops: [test.noop]\n"
        "  - name: b\n    from: a\n    ops: [test.noop]\n"
        "  - name: c\n    from: b\n    ops: [test.noop]\n"
        "  - name: d\n    from: d\n    ops: [test.noop]\n"
        "  - name: e\n    from: a\n    ops: [test.noop]\n"  # below the loop: no extra problem
    )
    r = parse(text, ws)
    cycles = [p for p in r.problems if p.code == "cycle"]
    lines = sorted(p.range.start_line for p in cycles)
    assert lines == [
        pos(text, "from: c")[0],
        pos(text, "from: a")[0],
        pos(text, "from: b")[0],
        pos(text, "from: d")[0],
    ]
    for p in cycles:
        assert p.range.start_col == len("    from: ") and p.range.end_col == p.range.start_col + 1
    assert "a → c → b → a" in cycles[0].message and "d → d" in cycles[-1].message
    assert len(r.problems) == 4


def test_duplicate_name_and_reserved_names(ws: Path) -> None:
    text = "base: {name: tiny, load: model}\nvariants:\n" + (
        "  - name: a\n    ops: [test.noop]\n"
        "  - name: a\n    ops: [test.noop]\n"
        "  - name: base\n    ops: [test.noop]\n"
        "  - name: tiny\n    ops: [test.noop]\n"
    )
    r = parse(text, ws)
    line_a2 = pos(text, "name: a", 1)[0]
    assert at(only(r, "duplicate-name")) == (line_a2, 10, line_a2, 11)
    reserved = [at(p) for p in r.problems if p.code == "reserved-name"]
    assert reserved == [
        (pos(text, "name: base")[0], 10, pos(text, "name: base")[0], 14),
        (pos(text, "name: tiny", 1)[0], 10, pos(text, "name: tiny", 1)[0], 14),
    ]


def test_duplicate_yaml_key(ws: Path) -> None:
    text = HEAD + "  - name: a\n    name: b\n    ops: [test.noop]\n"
    p = only(parse(text, ws), "duplicate-key")
    assert at(p) == span(text, "name", 1)


def test_missing_paths(ws: Path) -> None:
    text = (
        "base:\n  load: nomodel\n  factory: nofile.py:build\n"
        "task:\n  kind: text-classification\n  data: nodata\n"
        "ops_from: [my_ops.py, gone.py]\n"
        "variants:\n  - name: a\n    ops: [test.noop]\n"
    )
    r = parse(text, ws)
    got = sorted(at(p) for p in r.problems if p.code == "missing-path")
    assert got == sorted(
        [span(text, "nomodel"), span(text, "nofile.py:build"), span(text, "nodata"), span(text, "gone.py")]
    )
    assert all("does not exist" in p.message for p in r.problems if p.code == "missing-path")
    r2 = parse("base: {load: weights.safetensors}\nvariants:\n  - name: a\n    ops: [test.noop]\n", ws)
    assert "factory" in only(r2, "missing-required").message
    text3 = "base: {load: nosuchmodule.models:make, dtype: float8, args: 3}\nvariants:\n  - name: a\n    ops: [test.noop]\n"
    r3 = parse(text3, ws)
    assert at(only(r3, "missing-path")) == span(text3, "nosuchmodule.models:make")
    assert at(only(r3, "out-of-range")) == span(text3, "float8")
    assert at(only(r3, "wrong-type")) == span(text3, "3}", length=1)


def test_task_kind_and_options(ws: Path) -> None:
    text = (
        "base: {load: model}\ntask:\n  kind: text-clasification\n"
        + "variants:\n  - name: a\n    ops: [test.noop]\n"
    )
    p = only(parse(text, ws), "unknown-task")
    assert at(p) == span(text, "text-clasification") and "text-classification" in p.message
    text2 = (
        "base: {load: model}\ntask:\n  kind: text-classification\n  data: data\n  max_lenght: 3\n"
        "  top_k: many\n  max_instances: 0\n" + "variants:\n  - name: a\n    ops: [test.noop]\n"
    )
    r = parse(text2, ws)
    assert at(only(r, "unknown-key")) == span(text2, "max_lenght")
    assert "did you mean 'max_length'?" in only(r, "unknown-key").message
    assert at(only(r, "wrong-type")) == span(text2, "many")
    assert at(only(r, "out-of-range")) == (6, 17, 6, 18)


def test_device_and_seed(ws: Path) -> None:
    text = "seed: 1.5\ndevice: tpu\n" + HEAD + "  - name: a\n    ops: [test.noop]\n"
    r = parse(text, ws)
    assert at(only(r, "wrong-type")) == span(text, "1.5")
    assert at(only(r, "out-of-range")) == span(text, "tpu")


def test_op_entry_shapes(ws: Path) -> None:
    text = HEAD + (
        "  - name: a\n    ops:\n"
        "      - test.scale:\n        factor: 1\n"  # wrongly indented parameter
        "      - test.noop: 3\n"
        "      - [x]\n"
    )
    r = parse(text, ws)
    got = sorted((p.code, at(p)) for p in r.problems)
    assert ("unknown-key", span(text, "factor")) in got
    assert "indent it under the op name" in next(p.message for p in r.problems if p.code == "unknown-key")
    assert ("wrong-type", span(text, "3")) in got
    assert ("wrong-type", span(text, "[x]")) in got
    assert ("missing-required", span(text, "test.scale")) in got  # factor is not under it


def test_many_errors_in_one_file_all_reported_in_order(ws: Path) -> None:
    text = (
        "seed: x\n"
        "base:\n  load: nomodel\n"
        "task:\n  kind: image-clasification\n"
        "variants:\n"
        "  - name: a\n    from: zz\n    ops:\n      - prune.magnitud: {sparsity: 0.5}\n"
        "  - name: b\n    ops:\n      - test.scale: {factor: 11, modes: a}\n"
        "  - name: b\n    ops: [test.noop]\n"
    )
    r = parse(text, ws)
    codes = [p.code for p in r.problems]
    assert codes == [
        "wrong-type",
        "missing-path",
        "unknown-task",
        "unknown-parent",
        "unknown-op",
        "out-of-range",
        "unknown-param",
        "duplicate-name",
    ]
    assert r.experiment is None and r.partial is not None
    lines = [p.range.start_line for p in r.problems]
    assert lines == sorted(lines)
    assert all(c in PROBLEM_CODES for c in codes)
    assert all(str(p).startswith(f"{ws / 'exp.bonsai.yaml'}:") for p in r.problems)


def test_never_raises_on_odd_input(ws: Path) -> None:
    odd = [
        "variants: 3\nbase: 4\n",
        "base: {load: [1]}\nvariants: [1, 'x', {name: {a: 1}}, {name: a, ops: {x: 1}}]\n",
        "? [a]\n: 1\n",
        "base: {load: model}\nvariants:\n  - name: a\n    ops:\n      - {}\n      - null\n      - 5: 1\n",
        "&a x: *a\n",
        "base: !!binary aGVsbG8=\n",
        "a: 1\n---\nb: 2\n",
        "task: [1]\nops_from: 3\nvariants:\n  -\n",
    ]
    for text in odd:
        r = parse(text, ws)
        assert r.problems and not r.ok, text


def test_user_task_and_ops_files(ws: Path) -> None:
    (ws / "tasks.py").write_text("class MyTask: pass\n")
    (ws / "broken_ops.py").write_text("def f(:\n")
    good = "base: {load: model}\ntask: {kind: tasks.py:MyTask, anything: 1}\nops_from: my_ops.py\ndevice: cuda:1\n"
    r = parse(good + "variants:\n  - name: a\n    ops: [user.double]\n", ws)
    assert r.ok, r.problems
    assert r.experiment is not None and r.experiment.task is not None and r.experiment.task.is_user_task
    assert r.experiment.device == "cuda:1"
    text = (
        "base: {load: model}\ntask: {kind: nofile.py:MyTask}\nops_from: [broken_ops.py, notes.txt]\n"
        "variants:\n  - name: a\n    ops: [user.double]\n"
    )
    r = parse(text, ws)
    got = {(p.code, at(p)) for p in r.problems}
    assert ("missing-path", span(text, "nofile.py:MyTask")) in got
    assert ("wrong-type", span(text, "broken_ops.py")) in got  # not valid Python, with its line
    assert "line 1" in next(p.message for p in r.problems if "broken_ops" in p.message)
    assert ("wrong-type", span(text, "notes.txt")) in got
    assert ("unknown-op", span(text, "user.double")) in got  # its file could not be read
    text = "base: {load: model}\nops_from: my_ops.py\nvariants:\n  - name: a\n    ops: [user.doubel]\n"
    assert "did you mean 'user.double'?" in only(parse(text, ws), "unknown-op").message


@pytest.mark.parametrize("loader", ["SafeLoader", "CSafeLoader"])
def test_pure_python_and_libyaml_give_the_same_positions(
    ws: Path, loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from modelbonsai.experiment import yamlnodes

    if not hasattr(yaml, loader):
        pytest.fail(f"PyYAML here lacks {loader}")  # the venv's PyYAML is built with libyaml
    monkeypatch.setattr(yamlnodes, "_LOADER", getattr(yaml, loader))
    text = (
        HEAD
        + "  - name: a\n    ops:\n      - test.scale: {factor: 1e-3, mode: 'c'}\n  - name: b\n    ops: [x\n"
    )
    p = only(parse(text, ws), "yaml-syntax")
    assert at(p) == (7, 0, 7, 0) and "not closed" in p.message  # at the end of the text
    text = HEAD + "  - name: a\n    ops:\n      - test.scale: {factor: 1e-3, mode: 'c'}\n"
    r = parse(text, ws)
    assert [(q.code, at(q)) for q in r.problems] == [("out-of-range", span(text, "'c'"))]


def test_ops_that_need_a_task(ws: Path) -> None:
    text = HEAD + "  - name: a\n    ops: [test.noop, test.calibrate]\n"
    p = only(parse(text, ws), "missing-required")
    assert at(p) == span(text, "test.calibrate") and "task" in p.message
    with_task = "task: {kind: text-classification, data: data}\n" + text
    assert parse(with_task, ws).ok


def test_distillation_needs_training_data_of_the_task_own(ws: Path) -> None:
    """finetune's distill trains on the task's training batches: a task whose training batches
    would be its evaluation instances (no `train:`) is reported at the value, before any run."""
    (ws / "eval.jsonl").write_text('{"text": "a", "label": 0}\n')
    ops = "  - name: kd\n    ops:\n      - finetune: {steps: 2, distill: [0.0, 0.5]}\n"
    text = "base: {load: model}\ntask: {kind: text-classification, data: eval.jsonl}\nvariants:\n" + ops
    p = only(parse(text, ws), "task-data")
    assert at(p) == span(text, "[0.0, 0.5]") and "train:" in p.message and p.severity == "error"
    assert "task-data" in PROBLEM_CODES
    with_train = text.replace("data: eval.jsonl}", "data: eval.jsonl, train: eval.jsonl}")
    assert parse(with_train, ws).ok
    plain = text.replace("distill: [0.0, 0.5]", "distill: 0")  # no distillation: calibration-like use is fine
    assert parse(plain, ws).ok
    lm = text.replace("kind: text-classification, data: eval.jsonl", "kind: causal-lm, data: eval.jsonl")
    assert not [q for q in parse(lm, ws).problems if q.code == "task-data"]  # it holds out its own tail
