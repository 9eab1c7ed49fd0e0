"""scripts/sample_numbers.py: the numbers quoted in the sample READMEs are generated from the stored
results (issue 19 item 10). The README's sections are checked against the committed numbers.json
on every run, and numbers.json against the sample's store where the sample has been run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


sn = load_script("sample_numbers")
SAMPLES_WITH_SECTIONS = sn.samples_with_sections()


def test_every_registered_section_belongs_to_a_sample_with_a_readme() -> None:
    assert set(SAMPLES_WITH_SECTIONS) == {"charlm", "digits", "minilm"}
    for s in sn.SECTIONS.values():
        assert (ROOT / "samples" / s.sample / "README.md").is_file(), s.name


@pytest.mark.parametrize("sample", SAMPLES_WITH_SECTIONS)
def test_readme_sections_are_what_the_recorded_numbers_give(sample: str) -> None:
    """On a fresh clone (no models): the README is exactly what the script renders from the
    committed numbers.json, and every section has its markers."""
    folder = ROOT / "samples" / sample
    facts = json.loads((folder / sn.FACTS_FILE).read_text(encoding="utf-8"))
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert set(sn.generated(text)) == {s.name for s in sn.sections_of(sample)}
    assert sn.render(text, sn.Results.from_facts(sample, facts)) == text, (
        f"run `python scripts/sample_numbers.py --only {sample}`"
    )


@pytest.mark.parametrize("sample", SAMPLES_WITH_SECTIONS)
def test_recorded_numbers_are_the_stored_results(sample: str) -> None:
    """Where the sample has been run (`make demo`), numbers.json is what its store answers."""
    folder = ROOT / "samples" / sample
    if not (folder / ".bonsai" / "lineage.sqlite").is_file():
        pytest.skip(f"samples/{sample} has not been run here")
    assert sn.refresh(sample, None, check=True) == []


def test_sections_render_exact_text_from_recorded_answers() -> None:
    classes = {str(c): 10 for c in range(3)}
    facts = {
        "class_counts": {"digits-cnn": classes},
        "metric": {
            "digits-cnn accuracy": 96.66666666666667,
            "digits-cnn parameters": 65210.0,
            "digits-cnn stored_size": 267264.0,
            **{f"digits-cnn class_accuracy/{c}": v for c, v in zip("012", (100.0, 90.0, 100.0), strict=True)},
            "layer-0.3-bn accuracy": 90.0,
            **{
                f"layer-0.3-bn class_accuracy/{c}": v for c, v in zip("012", (100.0, 90.0, 80.0), strict=True)
            },
            "int8 accuracy": 96.66666666666667,
            **{f"int8 class_accuracy/{c}": v for c, v in zip("012", (100.0, 90.0, 100.0), strict=True)},
        },
        "present": {m: m in ("layer-0.3-bn", "int8") for m in sn.DIGITS_MODELS},
        "transitions": {
            "digits-cnn -> layer-0.3-bn": [["2", "1", 2], ["0", "2", 1]],
            "digits-cnn -> int8": [],
        },
        "version": {"digits-cnn torch": "2.13.0", "digits-cnn python": "3.11.7"},
    }
    r = sn.Results.from_facts("digits", facts)
    assert sn.digits_classes(r).splitlines()[2:] == [
        "| model | accuracy | Δ vs base | class that lost most | its accuracy (base) | most frequent transitions |",
        "|---|---|---|---|---|---|",
        "| digits-cnn (base) | 96.7 % | | | | |",
        "| layer-0.3-bn | 90.0 % | −6.7 pt | 2 | 80.0 % (8/10; base 100.0 %) | 2 → 1 (2), 0 → 2 (1) |",
        "| int8 | 96.7 % | +0.0 pt | none | — | none |",
    ]
    assert sn.digits_base(r) == (
        "The base model (65,210 parameters, 261.0 KiB stored) reaches **96.7 %** on the 30 held-out "
        "images (this run: torch 2.13.0, Python 3.11.7; other versions can move individual instances).\n"
    )


def test_a_question_the_recorded_numbers_do_not_answer_is_named() -> None:
    r = sn.Results.from_facts("digits", {"metric": {}})
    with pytest.raises(
        sn.NumbersError, match=r"samples/digits/numbers.json has no metric 'int4 accuracy': run"
    ):
        r.metric("int4", "accuracy")


def test_markers_and_registry_are_checked() -> None:
    r = sn.Results.from_facts("zzz", {"metric": {"m x": 1.5}})

    @sn.section("zzz-one", sample="zzz")
    def one(res: sn.Results) -> str:
        return f"x is {res.metric('m', 'x')}\n"

    try:
        with pytest.raises(ValueError, match="section 'zzz-one' is registered twice"):
            sn.section("zzz-one", sample="zzz")(one)
        text = "a\n<!-- numbers:zzz-one -->\nold\n<!-- /numbers:zzz-one -->\nb\n"
        assert sn.render(text, r) == "a\n<!-- numbers:zzz-one -->\nx is 1.5\n<!-- /numbers:zzz-one -->\nb\n"
        with pytest.raises(sn.NumbersError, match=r"README\.md has no markers for zzz-one"):
            sn.render("no markers\n", r)
        with pytest.raises(sn.NumbersError, match="no section 'zzz-two' is registered"):
            sn.render(text + "<!-- numbers:zzz-two -->\n<!-- /numbers:zzz-two -->\n", r)
    finally:
        del sn.SECTIONS["zzz-one"]
