"""`bonsai import-cc`: a Compress and Compare models.json (tests/fixtures/compress_and_compare,
hand-written to that system's documented format) becomes models with recipes and metrics and no
weights; bad files name the field; nothing stored is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbonsai.artifacts.manifest import NoWeightsError, read_manifest
from modelbonsai.cli import main
from modelbonsai.share.cc_import import CCFormatError, import_cc_lineage, read_cc_lineage
from modelbonsai.store import LineageStore
from modelbonsai.store.records import ModelRecord

FIXTURE = Path(__file__).parents[1] / "fixtures" / "compress_and_compare" / "models.json"


def _write(tmp_path: Path, data: object) -> Path:
    f = tmp_path / "models.json"
    f.write_text(json.dumps(data))
    return f


def _models(*models: dict[str, object]) -> dict[str, object]:
    return {"metrics": [{"name": "Accuracy", "primary": True, "unit": "%"}], "models": list(models)}


def test_the_fixture_imports_parents_first_with_its_metrics(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        result = import_cc_lineage(store, FIXTURE)
        assert [r.name for r in result.added] == [
            "base",
            "pruning0.5",
            "pruning0.5_restorelayernorms",
            "int8",
        ]
        by = {m.name: m for m in store.list_models()}
        assert by["pruning0.5_restorelayernorms"].parent_id == by["pruning0.5"].id
        assert by["pruning0.5"].parent_id == by["base"].id and by["base"].parent_id is None
        restore = by["pruning0.5_restorelayernorms"]
        assert (restore.op, restore.params) == ("Restore", {"layers": "layernorms"})
        assert restore.status == "ok"
        assert restore.imported == {
            "tool": "Compress and Compare",
            "file": str(FIXTURE.resolve()),
            "id": "pruning0.5_restorelayernorms",
        }
        metrics = {x.name: x for x in store.metrics(restore.id)}
        assert (metrics["Accuracy"].value, metrics["Accuracy"].unit, metrics["Accuracy"].headline) == (
            90.25,
            "%",
            True,
        )
        assert metrics["Accuracy"].higher_is_better
        assert (metrics["Latency"].value, metrics["Latency"].unit) == (11.5, "ms")
        assert not metrics["Latency"].higher_is_better and not metrics["Model Size"].higher_is_better
        # ".2%" shows a fraction as a percentage: stored in percent, as Bonsai's own are
        assert (metrics["Sparsity"].value, metrics["Sparsity"].unit, metrics["Sparsity"].headline) == (
            40.0,
            "%",
            False,
        )
        # a null metric was not measured for that model: absent, not zero
        assert {x.name for x in store.metrics(by["int8"].id)} == {"Accuracy", "Latency", "Model Size"}


def test_importing_again_adds_nothing(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        first = import_cc_lineage(store, FIXTURE)
        again = import_cc_lineage(store, FIXTURE)
        assert again.added == [] and [r.id for r in again.already] == [r.id for r in first.added]
        assert len(store.list_models()) == 4


def test_comparisons_that_need_weights_say_the_model_was_imported(tmp_path: Path) -> None:
    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        int8 = store.get_model("int8")
        with pytest.raises(NoWeightsError, match=r"model 'int8' was imported from Compress and Compare"):
            read_manifest(store.artifact_path(int8))


def test_cli_import_then_compare_and_export_refuse_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-cc", str(FIXTURE), "-w", str(tmp_path)]) == 0
    assert "4 models imported" in capsys.readouterr().err
    assert main(["ls", "-w", str(tmp_path)]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["compare", "base", "int8", "-w", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "was imported from Compress and Compare" in err and "Traceback" not in err
    assert main(["export", "int8", str(tmp_path / "out"), "-w", str(tmp_path)]) == 2
    assert "not its weights" in capsys.readouterr().err
    assert main(["show", "int8", "-w", str(tmp_path)]) == 0
    assert "imported   from Compress and Compare" in capsys.readouterr().out


def test_the_lineage_reply_marks_imported_models(tmp_path: Path) -> None:
    from modelbonsai.lsp.lineage import MetricTable, read_lineage

    with LineageStore.open(tmp_path) as store:
        import_cc_lineage(store, FIXTURE)
        info = {m["name"]: m for m in read_lineage(store, MetricTable())}
    assert info["int8"]["imported"] == {
        "tool": "Compress and Compare",
        "file": str(FIXTURE.resolve()),
        "id": "int8",
    }
    assert (info["int8"]["op"], info["int8"]["params"], info["int8"]["status"]) == (
        "Quantization",
        {"bits": 8},
        "ok",
    )


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        ([], "top level", "must be an object"),
        ({"models": {}}, "models", "must be a list"),
        (
            _models(
                {"id": "a", "base": None, "operation": None},
                {"id": "b", "base": "zz", "operation": {"name": "P"}},
            ),
            "models[1].base",
            "'zz' is not the id of a model in the file",
        ),
        (
            _models({"id": "a", "base": None}, {"id": "a", "base": None}),
            "models[1].id",
            "'a' is also models[0].id",
        ),
        (
            _models(
                {"id": "a", "base": "b", "operation": {"name": "P"}},
                {"id": "b", "base": "a", "operation": {"name": "P"}},
            ),
            "models[0].base",
            "'a' is its own ancestor",
        ),
        (_models({"id": "a", "base": None, "metrics": {"F1": 3}}), "models[0].metrics.F1", "is not declared"),
        (
            _models({"id": "a", "base": None, "metrics": {"Accuracy": "high"}}),
            "models[0].metrics.Accuracy",
            "must be a number or null",
        ),
        (_models({"id": "", "base": None}), "models[0].id", "must be a non-empty string"),
        (
            _models({"id": "a", "base": None}, {"id": "b", "base": "a"}),
            "models[1].operation",
            "has a base but no operation",
        ),
        ({"metrics": [{"unit": "%"}], "models": []}, "metrics[0].name", "must be a non-empty string"),
    ],
)
def test_a_malformed_file_names_the_field(tmp_path: Path, data: object, where: str, problem: str) -> None:
    f = _write(tmp_path, data)
    with pytest.raises(CCFormatError) as e:
        read_cc_lineage(f)
    assert (e.value.where, str(f) in str(e.value)) == (where, True)
    assert problem in e.value.problem


def test_broken_json_gives_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "models.json"
    f.write_text('{"models": [\n  {"id": "a",}\n]}')
    with pytest.raises(
        CCFormatError, match=r"models.json: line 2 column 14: not JSON \(Expecting property name"
    ):
        read_cc_lineage(f)


def test_a_bad_file_or_a_taken_name_changes_nothing_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LineageStore.open(tmp_path) as store:
        mine = store.add_model(
            ModelRecord(name="int8", fingerprint="mine"),
            lambda folder: (folder / "manifest.json").write_text("{}"),
        )
    bad = _write(tmp_path, _models({"id": "a", "base": "nope", "operation": {"name": "P"}}))
    assert main(["import-cc", str(bad), "-w", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "models[0].base: 'nope' is not the id of a model in the file" in err and "Traceback" not in err
    # the fixture's `int8` would take a name Bonsai already uses: refused before anything is added
    assert main(["import-cc", str(FIXTURE), "-w", str(tmp_path)]) == 2
    assert "model 'int8' has the name of a model already in" in capsys.readouterr().err
    with LineageStore.open(tmp_path) as store:
        assert [m.id for m in store.list_models()] == [mine.id]
