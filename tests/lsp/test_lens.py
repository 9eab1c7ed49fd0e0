"""The metrics CodeLens text: `acc 97.8% (−0.4) · 0.31 MB (4.1×)`."""

from __future__ import annotations

from typing import Any

from modelbonsai.lsp.lens import format_metric, metrics_lens_title


def metric(name: str, value: float, unit: str = "", higher: bool = True) -> Any:
    return {"name": name, "value": value, "unit": unit, "higherIsBetter": higher, "headline": True}


def test_percent_metrics_change_in_points_not_relative() -> None:
    assert format_metric(metric("accuracy", 97.8, "%"), metric("accuracy", 98.2, "%")) == "acc 97.8% (\u22120.4)"
    # a collapsed model's 0.5 % is half a percent, not 50 %
    assert format_metric(metric("accuracy", 0.5, "%"), metric("accuracy", 34.4, "%")) == "acc 0.5% (\u221233.9)"
    # unitless fractions are shown as percentages too
    assert format_metric(metric("accuracy", 0.25), metric("accuracy", 0.344)) == "acc 25.0% (\u22129.4)"


def test_size_shows_ratio_and_other_metrics_relative_change() -> None:
    assert format_metric(metric("stored_size", 310_000, "B", False), metric("stored_size", 1_271_000, "B", False)) == "0.31 MB (4.1×)"
    assert format_metric(metric("perplexity", 7.28, "", False), metric("perplexity", 6.23, "", False)) == "ppl 7.28 (+17%)"


def test_title_orders_quality_then_size() -> None:
    # as a lineage reply carries them: definitions once, values per model
    defs = {k: {x: v for x, v in metric(k, 0, unit, higher).items() if x != "value"}
            for k, unit, higher in (("stored_size", "B", False), ("accuracy", "%", True))}
    model = {"status": "ok", "metrics": {"stored_size": 310_000, "accuracy": 97.8}}
    parent = {"status": "ok", "metrics": {"stored_size": 1_271_000, "accuracy": 98.2}}
    assert metrics_lens_title(model, parent, defs) == "acc 97.8% (\u22120.4) · 0.31 MB (4.1×)"  # type: ignore[arg-type]


def test_title_compares_each_definition_with_its_own() -> None:
    """Two definitions under one name (acc in %, and an error rate also called acc: `acc#2` on the
    wire): each change is against the parent's value of the same definition."""
    defs = {"acc": {"name": "acc", "unit": "%", "higherIsBetter": True, "headline": True},
            "acc#2": {"name": "acc", "unit": "", "higherIsBetter": False, "headline": True}}
    model = {"status": "ok", "metrics": {"acc": 95.0, "acc#2": 0.05}}
    parent = {"status": "ok", "metrics": {"acc": 98.0, "acc#2": 0.02}}
    title = metrics_lens_title(model, parent, defs)  # type: ignore[arg-type]
    assert title == "acc\u2191 95.0% (\u22123.0) · acc\u2193 5.0% (+3.0)"


def test_a_noisy_latency_is_marked_and_the_tooltip_says_why() -> None:
    from modelbonsai.lsp.lens import noisy_note

    defs = {"latency": {"name": "latency", "unit": "ms", "higherIsBetter": False, "headline": True}}
    parent = {"status": "ok", "metrics": {"latency": 3.16}, "spreads": {"latency": {"spread": 0.04, "noisy": False}}}
    model = {"status": "ok", "metrics": {"latency": 3.9},
             "spreads": {"latency": {"spread": 2.1, "noisy": True, "note": "noisy: the rounds disagree"}}}
    assert metrics_lens_title(model, parent, defs) == "lat ~3.9 ms (+23%)"  # type: ignore[arg-type]
    note = noisy_note(model, parent, defs)  # type: ignore[arg-type]
    assert note is not None and "latency is noisy (noisy: the rounds disagree)" in note and "Measure Latency" in note
    # a noisy parent makes the change untrustworthy, not the value
    assert metrics_lens_title(parent, model, defs) == "lat 3.16 ms (~\u221219%)"  # type: ignore[arg-type]
    assert noisy_note(parent, None, defs) is None  # type: ignore[arg-type]
