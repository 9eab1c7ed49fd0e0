"""The shipped JSON Schema is the generated one; starter files validate."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from modelbonsai.experiment import (
    StarterError,
    guess_task_kind,
    load_experiment,
    starter_experiment,
    starter_path,
)
from modelbonsai.experiment.schema import SHIPPED, json_schema, main, schema_text
from modelbonsai.ops.registry import all_ops


def test_shipped_schema_is_up_to_date() -> None:
    shipped = files("modelbonsai").joinpath("schema/bonsai.schema.json").read_text(encoding="utf-8")
    assert Path(str(SHIPPED)).read_text(encoding="utf-8") == shipped
    assert shipped == schema_text(), "regenerate it: python -m modelbonsai.experiment.schema"


def test_schema_has_every_builtin_op_and_no_test_ops() -> None:
    schema = json_schema()
    entry = schema["properties"]["variants"]["items"]["properties"]["ops"]["items"]["anyOf"]
    names = entry[0]["enum"]
    builtin = [
        op.name for op in all_ops() if op.source == "builtin" and op.fn.__module__.startswith("modelbonsai.")
    ]
    assert names == builtin and "prune.magnitude" in names and "quantize.weights" in names
    assert not any(n.startswith("test.") for n in names)
    prune = next(e for e in entry[1:] if e["title"] == "prune.magnitude")
    params = prune["properties"]["prune.magnitude"]["anyOf"][0]["properties"]
    sparsity = params["sparsity"]
    assert sparsity["anyOf"][1]["type"] == "array"  # a sweep
    assert "markdownDescription" in prune and prune["additionalProperties"] is False
    assert set(schema["required"]) == {"base", "variants"}
    assert "text-classification" in schema["properties"]["task"]["properties"]["kind"]["anyOf"][0]["enum"]
    json.dumps(schema)  # plain JSON


def test_write_schema_to_a_chosen_path(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    assert main([str(target)]) == 0
    assert json.loads(target.read_text()) == json_schema()


def _hf_folder(root: Path, arch: str) -> Path:
    model = root / "my model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "x"}))
    return model / "config.json"


@pytest.mark.parametrize(
    ("arch", "kind"),
    [
        ("BertForSequenceClassification", "text-classification"),
        ("GPT2LMHeadModel", "causal-lm"),
        ("LlamaForCausalLM", "causal-lm"),
        ("BertModel", "sentence-embedding"),
        ("ViTForImageClassification", "image-classification"),
        ("BertForMaskedLM", None),
    ],
)
def test_starter_validates_with_no_problems(tmp_path: Path, arch: str, kind: str | None) -> None:
    config = _hf_folder(tmp_path, arch)
    assert guess_task_kind(json.loads(config.read_text())) == kind
    text = starter_experiment(config)
    target = starter_path(config)
    assert target == tmp_path / "my-model.bonsai.yaml"
    target.write_text(text)
    r = load_experiment(target)
    assert r.problems == [], [str(p) for p in r.problems]
    e = r.experiment
    assert e is not None and e.base.load_path == config.parent and e.base.load_kind == "hf-folder"
    assert (e.task.kind if e.task else None) == kind
    assert [v.name for v in e.variants] == ["prune-0.3", "prune-0.5", "int8", "prune-0.5-int8"]


def test_starter_names_generic_folders_after_their_parent(tmp_path: Path) -> None:
    (tmp_path / "minilm" / "model").mkdir(parents=True)
    config = tmp_path / "minilm" / "model" / "config.json"
    config.write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "minilm" / "data").mkdir()
    (tmp_path / "minilm" / "data" / "sentences.jsonl").write_text('{"text": "a"}\n')
    text = starter_experiment(config)
    assert (
        "  name: minilm\n" in text and "  load: model\n" in text and "  data: data/sentences.jsonl\n" in text
    )
    target = starter_path(config)
    target.write_text(text)
    assert load_experiment(target).problems == []


def test_starter_uses_data_found_beside_the_model(tmp_path: Path) -> None:
    config = _hf_folder(tmp_path, "BertForSequenceClassification")
    (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": 0}\n')
    text = starter_experiment(config, tmp_path)
    assert "  data: eval.jsonl" in text
    f = tmp_path / "x.bonsai.yaml"
    f.write_text(text)
    r = load_experiment(f)
    assert r.ok and r.experiment is not None and r.experiment.task is not None
    assert r.experiment.task.options["data"] == "eval.jsonl"


def test_starter_errors_are_plain(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(StarterError, match="not valid JSON"):
        starter_experiment(bad)
    with pytest.raises(StarterError, match="cannot read"):
        starter_experiment(tmp_path / "missing" / "config.json")


def test_schema_accepts_valid_files_and_rejects_bad_ones() -> None:
    import yaml

    from .minischema import errors

    schema = json_schema()
    good = yaml.safe_load(
        """
        seed: 0
        device: cuda:0
        base: {name: m, load: model, dtype: float16}
        task: {kind: text-classification, data: data, max_length: 64, max_instances: 10}
        ops_from: my_ops.py
        variants:
          - name: "p-{sparsity}"
            ops:
              - prune.magnitude: {sparsity: [0.3, 0.5], scope: global, exclude: ["*norm*", "*.bias"]}
              - quantize.weights: {bits: [4, 8], granularity: group, group_size: 32, exclude: ["a*"]}
          - name: c
            from: p-0.3
            ops: [quantize.weights, {prune.magnitude: null}]
        """
    )
    assert errors(schema, good) == []
    for bad in [
        {**good, "devise": "cpu"},
        {**good, "base": {"name": "m"}},
        {**good, "variants": [{"name": "a", "ops": [{"prune.magnitude": {"sparsity": 1.5}}]}]},
        {**good, "variants": [{"name": "a", "ops": [{"prune.magnitud": {}}]}]},
        {**good, "variants": [{"name": "a", "ops": [{"quantize.weights": {"bits": "8"}}]}]},
        {**good, "variants": [{"name": "a", "ops": [{"prune.magnitude": {"scope": "glob"}}]}]},
        {**good, "variants": [{"name": "a", "ops": []}]},
        {**good, "task": {"kind": "text-classification", "max_length": "long"}},
    ]:
        assert errors(schema, bad), bad


def test_schema_of_a_sweepable_pattern_param_takes_a_list_of_lists() -> None:
    from modelbonsai.experiment.schema import _param_schema
    from modelbonsai.ops.registry import Param

    from .minischema import errors

    s = _param_schema(Param("include", "patterns", "doc", sweepable=True))
    assert errors(s, "a*") == [] and errors(s, ["a*", "b"]) == [] and errors(s, [["a*"], ["b"]]) == []
    assert errors(s, 3) and errors(s, [[1]])
    fixed = _param_schema(Param("include", "patterns", "doc", sweepable=False))
    assert errors(fixed, ["a*"]) == [] and errors(fixed, [["a*"]])
