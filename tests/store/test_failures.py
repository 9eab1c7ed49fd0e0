"""store/failures.py: which variants are failed, from the run records (what `bonsai ls` lists and
the language server's lineage shows)."""

from __future__ import annotations

from pathlib import Path

from modelbonsai.store import LineageStore, ModelRecord
from modelbonsai.store.failures import Outcome, failed_variants, latest_outcomes, still_failed
from support.workspace import write_workspace

EXPERIMENT = """\
base:
  name: toy
  load: model.safetensors
  factory: arch.py:build
variants:
  - name: a
    ops:
      - prune.magnitude: {sparsity: 0.5}
  - name: b
    from: a
    ops:
      - quantize.weights: {bits: 8}
"""


def run(store: LineageStore, variants: list[str], failures: dict[str, str]) -> None:
    r = store.start_run("exp.bonsai.yaml", variants)
    store.finish_run(r.id, "failed" if failures else "done", failures=failures)


def test_latest_outcome_wins_and_a_stored_model_clears_a_failure() -> None:
    runs = [("f", '["a", "b"]', 1.0, 2.0, '{"a": "boom"}'), ("f", ["b"], 3.0, 4.0, {"b": "bang"})]
    latest = latest_outcomes(runs)
    assert latest == {("f", "a"): Outcome(1.0, 2.0, "boom"), ("f", "b"): Outcome(3.0, 4.0, "bang")}
    assert still_failed(latest[("f", "a")], []) == "boom"
    assert still_failed(latest[("f", "a")], [0.5]) == "boom"  # made before the failing run: still failed
    assert still_failed(latest[("f", "a")], [1.5]) is None  # made since
    assert still_failed(latest_outcomes([("f", ["a"], 5.0, 6.0, "{}")])[("f", "a")], []) is None
    assert still_failed(None, []) is None


def test_failed_variants_follow_the_runs_and_the_file(tmp_path: Path) -> None:
    write_workspace(tmp_path, EXPERIMENT, "")
    with LineageStore.open(tmp_path) as store:
        run(store, ["toy", "a", "b"], {"b": "op quantize.weights: out of memory"})
        (f,) = failed_variants(store)
        assert (f.experiment_file, f.variant, f.message) == (
            "exp.bonsai.yaml",
            "b",
            "op quantize.weights: out of memory",
        )
        assert (f.parent, f.op) == ("a", "quantize.weights")

        # a later run that covers only `a` leaves `b` failed; one that makes `b` clears it
        run(store, ["a"], {})
        assert [x.variant for x in failed_variants(store)] == ["b"]
        store.add_model(
            ModelRecord(name="b", experiment_file="exp.bonsai.yaml", variant="b"), lambda folder: None
        )
        assert failed_variants(store) == []

        run(store, ["b"], {"b": "again"})
        assert [x.message for x in failed_variants(store)] == ["again"]
        # the file no longer declares it: not listed; a file that does not parse keeps it listed
        (tmp_path / "exp.bonsai.yaml").write_text(EXPERIMENT.split("  - name: b")[0])
        assert failed_variants(store) == []
        (tmp_path / "exp.bonsai.yaml").write_text("base: [")
        assert [x.variant for x in failed_variants(store)] == ["b"]
        (tmp_path / "exp.bonsai.yaml").unlink()
        assert failed_variants(store) == []
