"""The metrics CodeLens text: `acc 97.8% (−0.4 pt vs base) · 302.7 KiB (4.10× vs base)`, and the
summary line of a sweep."""

from __future__ import annotations

from typing import Any

from modelbonsai.lsp.lens import format_metric, human_bytes, lineage_base, metrics_lens_title, sweep_summary


def metric(name: str, value: float, unit: str = "", higher: bool = True) -> Any:
    return {"name": name, "value": value, "unit": unit, "higherIsBetter": higher, "headline": True}


def test_percent_metrics_change_in_points_not_relative() -> None:
    assert (
        format_metric(metric("accuracy", 97.8, "%"), metric("accuracy", 98.2, "%"))
        == "acc 97.8% (\u22120.4 pt vs base)"
    )
    # a collapsed model's 0.5 % is half a percent, not 50 %
    assert (
        format_metric(metric("accuracy", 0.5, "%"), metric("accuracy", 34.4, "%"))
        == "acc 0.5% (\u221233.9 pt vs base)"
    )
    # unitless fractions are shown as percentages too
    assert (
        format_metric(metric("accuracy", 0.25), metric("accuracy", 0.344))
        == "acc 25.0% (\u22129.4 pt vs base)"
    )


def test_sizes_in_binary_units() -> None:
    assert [human_bytes(n) for n in (512, 1024, 310_000, 1_271_000, 3 * 1024**3)] == [
        "512 B",
        "1.0 KiB",
        "302.7 KiB",
        "1.21 MiB",
        "3.00 GiB",
    ]


def test_size_shows_ratio_and_other_metrics_relative_change() -> None:
    size = format_metric(
        metric("stored_size", 310_000, "B", False), metric("stored_size", 1_271_000, "B", False)
    )
    assert size == "302.7 KiB (4.10× vs base)"
    assert (
        format_metric(metric("perplexity", 7.28, "", False), metric("perplexity", 6.23, "", False))
        == "ppl 7.28 (+17% vs base)"
    )


def test_change_against_parent_and_base() -> None:
    """layer-0.4-bn: batch-norm recalibration leaves the size of its parent layer-0.4 alone, which
    is 1.55× smaller than the base: the lens says both."""
    m = metric("stored_size", 100_000, "B", False)
    assert (
        format_metric(
            m, metric("stored_size", 100_000, "B", False), base=metric("stored_size", 155_000, "B", False)
        )
        == "97.7 KiB (1.00× vs parent, 1.55× vs base)"
    )
    acc = format_metric(
        metric("accuracy", 97.0, "%"), metric("accuracy", 96.5, "%"), base=metric("accuracy", 98.1, "%")
    )
    assert acc == "acc 97.0% (+0.5 pt vs parent, \u22121.1 pt vs base)"


def test_title_orders_quality_then_size() -> None:
    # as a lineage reply carries them: definitions once, values per model
    defs = {
        k: {x: v for x, v in metric(k, 0, unit, higher).items() if x != "value"}
        for k, unit, higher in (("stored_size", "B", False), ("accuracy", "%", True))
    }
    model = {"status": "ok", "metrics": {"stored_size": 310_000, "accuracy": 97.8}}
    parent = {"status": "ok", "metrics": {"stored_size": 1_271_000, "accuracy": 98.2}}
    assert (
        metrics_lens_title(model, parent, defs)
        == "acc 97.8% (\u22120.4 pt vs base) · 302.7 KiB (4.10× vs base)"
    )  # type: ignore[arg-type]
    base = {"status": "ok", "metrics": {"stored_size": 2_542_000, "accuracy": 99.0}}
    assert metrics_lens_title(model, parent, defs, base) == (  # type: ignore[arg-type]
        "acc 97.8% (\u22120.4 pt vs parent, \u22121.2 pt vs base) · 302.7 KiB (4.10× vs parent, 8.20× vs base)"
    )


def test_lineage_base_is_the_root_unless_it_is_the_parent() -> None:
    by_id: Any = {i: {"id": i, "parent": p} for i, p in (("b", None), ("x", "b"), ("y", "x"), ("z", "y"))}
    assert lineage_base(by_id["x"], by_id) is None
    assert lineage_base(by_id["y"], by_id)["id"] == "b"  # type: ignore[index]
    assert lineage_base(by_id["z"], by_id)["id"] == "b"  # type: ignore[index]
    assert lineage_base(by_id["b"], by_id) is None


def test_sweep_summary_gives_each_headline_metric_s_range() -> None:
    defs = {
        k: {x: v for x, v in metric(k, 0, unit, higher).items() if x != "value"}
        for k, unit, higher in (("stored_size", "B", False), ("accuracy", "%", True))
    }
    models: Any = [
        {"status": "ok", "metrics": {"stored_size": s, "accuracy": a}}
        for s, a in ((61_850, 98.0), (28_800, 91.2), (45_000, 97.1))
    ]
    assert sweep_summary(models, 3, defs) == "3 models · acc 91.2–98.0% · 28.1–60.4 KiB"  # type: ignore[arg-type]
    models[1]["status"] = "broken"
    assert sweep_summary(models, 6, defs) == "3 of 6 models run · acc 91.2–98.0% · 28.1–60.4 KiB · 1 broken"  # type: ignore[arg-type]


def test_title_compares_each_definition_with_its_own() -> None:
    """Two definitions under one name (acc in %, and an error rate also called acc: `acc#2` on the
    wire): each change is against the parent's value of the same definition."""
    defs = {
        "acc": {"name": "acc", "unit": "%", "higherIsBetter": True, "headline": True},
        "acc#2": {"name": "acc", "unit": "", "higherIsBetter": False, "headline": True},
    }
    model = {"status": "ok", "metrics": {"acc": 95.0, "acc#2": 0.05}}
    parent = {"status": "ok", "metrics": {"acc": 98.0, "acc#2": 0.02}}
    title = metrics_lens_title(model, parent, defs)  # type: ignore[arg-type]
    assert title == "acc\u2191 95.0% (\u22123.0 pt vs base) · acc\u2193 5.0% (+3.0 pt vs base)"


def test_a_noisy_latency_is_marked_and_the_tooltip_says_why() -> None:
    from modelbonsai.lsp.lens import noisy_note

    defs = {"latency": {"name": "latency", "unit": "ms", "higherIsBetter": False, "headline": True}}
    parent = {
        "status": "ok",
        "metrics": {"latency": 3.16},
        "spreads": {"latency": {"spread": 0.04, "noisy": False}},
    }
    model = {
        "status": "ok",
        "metrics": {"latency": 3.9},
        "spreads": {"latency": {"spread": 2.1, "noisy": True, "note": "noisy: the rounds disagree"}},
    }
    assert metrics_lens_title(model, parent, defs) == "lat ~3.9 ms (+23% vs base)"  # type: ignore[arg-type]
    note = noisy_note(model, parent, defs)  # type: ignore[arg-type]
    assert (
        note is not None
        and "latency is noisy (noisy: the rounds disagree)" in note
        and "Measure Latency" in note
    )
    # a noisy parent makes the change untrustworthy, not the value
    assert metrics_lens_title(parent, model, defs) == "lat 3.16 ms (~\u221219% vs base)"  # type: ignore[arg-type]
    assert noisy_note(parent, None, defs) is None  # type: ignore[arg-type]
