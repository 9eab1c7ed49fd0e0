"""McNemar's paired test and the confusion change of a classifier (base vs model), exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from modelbonsai.compare.behavior import compare_behavior, confusion_change
from modelbonsai.compare.stats import MCNEMAR_CHI2, MCNEMAR_EXACT, mcnemar
from modelbonsai.tasks.base import Evaluation


def test_mcnemar_exact_below_25_discordant_pairs() -> None:
    # b=10, c=2: 2·(C(12,0)+C(12,1)+C(12,2))/2^12 = 2·79/4096 = 79/2048, by hand
    r = mcnemar(10, 2)
    assert r == {"test": MCNEMAR_EXACT, "statistic": None, "p": 79 / 2048, "base_only": 10, "other_only": 2}
    assert r["p"] == scipy_stats.binomtest(2, 12, 0.5).pvalue
    # symmetric in the two sides; 24 pairs is still exact
    assert mcnemar(2, 10)["p"] == 79 / 2048
    assert mcnemar(20, 4)["test"] == MCNEMAR_EXACT
    assert mcnemar(20, 4)["p"] == scipy_stats.binomtest(4, 24, 0.5).pvalue == 0.001543879508972168
    assert mcnemar(0, 5)["p"] == 2 / 32  # 0.0625
    # a tail past one half is capped: b=2, c=1 gives 2·4/8 = 1
    assert mcnemar(2, 1)["p"] == 1.0
    # no discordant pair: no evidence either way
    assert mcnemar(0, 0) == {
        "test": MCNEMAR_EXACT,
        "statistic": None,
        "p": 1.0,
        "base_only": 0,
        "other_only": 0,
    }


def test_mcnemar_chi_square_with_continuity_correction_from_25() -> None:
    # b=30, c=10: (|30−10| − 1)² / 40 = 361/40 = 9.025
    r = mcnemar(30, 10)
    assert r["test"] == MCNEMAR_CHI2
    assert r["statistic"] == 9.025
    assert r["p"] == pytest.approx(scipy_stats.chi2.sf(9.025, 1), rel=1e-12)
    assert r["p"] == pytest.approx(0.002663119259138558, rel=1e-12)
    # 25 pairs: chi-square; (15 − 1)² / 25 = 7.84
    r = mcnemar(20, 5)
    assert (r["test"], r["statistic"]) == (MCNEMAR_CHI2, 7.84)
    assert r["p"] == pytest.approx(0.005110260660855866, rel=1e-12)
    # equal sides: the correction stops at zero (statistic 0, p 1), as scipy's Yates correction
    r = mcnemar(13, 13)
    assert (r["statistic"], r["p"]) == (0.0, 1.0)
    fit = scipy_stats.chi2_contingency(np.array([[13, 13], [13, 13]]), correction=True)
    assert fit.pvalue == 1.0
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


# targets, base and model predictions of 8 instances over 3 classes (worked out by hand below)
TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
BASE = [0, 0, 0, 1, 2, 2, 1, 2]
MODEL = [0, 1, 1, 1, 1, 2, 0, 2]
IDS = [f"x{i}" for i in range(8)]


def test_confusion_change_by_hand() -> None:
    r = confusion_change(np.array(TRUE), np.array(BASE), np.array(MODEL), IDS, 3, ["cat", "dog", "eel"])
    assert r["classes"] == [0, 1, 2] and r["names"] == ["cat", "dog", "eel"] and r["classes_total"] == 3
    assert r["base"] == [[3, 0, 0], [0, 1, 1], [0, 1, 2]]
    assert r["other"] == [[1, 2, 0], [0, 2, 0], [1, 0, 2]]
    # x1, x2: cat → dog; x4: dog fixed (was eel); x6: eel, dog → cat
    assert r["cells"] == [
        {"true": 0, "predicted": 0, "entered": [], "left": ["x1", "x2"]},
        {"true": 0, "predicted": 1, "entered": ["x1", "x2"], "left": []},
        {"true": 1, "predicted": 1, "entered": ["x4"], "left": []},
        {"true": 1, "predicted": 2, "entered": [], "left": ["x4"]},
        {"true": 2, "predicted": 0, "entered": ["x6"], "left": []},
        {"true": 2, "predicted": 1, "entered": [], "left": ["x6"]},
    ]
    # every cell's change is entered − left
    delta = np.array(r["other"]) - np.array(r["base"])
    for c in r["cells"]:
        assert delta[c["true"], c["predicted"]] == len(c["entered"]) - len(c["left"])


def test_confusion_change_keeps_the_busiest_classes() -> None:
    # moving traffic per class: 2·(true) + (base) + (other) = cat 7, dog 5, eel 4
    r = confusion_change(
        np.array(TRUE), np.array(BASE), np.array(MODEL), IDS, 3, ["cat", "dog", "eel"], limit=2
    )
    assert r["classes"] == [0, 1] and r["names"] == ["cat", "dog"] and r["classes_total"] == 3
    assert r["base"] == [[3, 0], [0, 1]] and r["other"] == [[1, 2], [0, 2]]
    assert r["cells"] == [
        {"true": 0, "predicted": 0, "entered": [], "left": ["x1", "x2"]},
        {"true": 0, "predicted": 1, "entered": ["x1", "x2"], "left": []},
        {"true": 1, "predicted": 1, "entered": ["x4"], "left": []},
    ]


def _ev(pred: list[int], targets: list[int] | None) -> Evaluation:
    probs = torch.nn.functional.one_hot(torch.tensor(pred), 3).double() * 0.7 + 0.1
    return Evaluation(metrics=[], ids=list(IDS), outputs=probs, predictions=torch.tensor(pred),
                      targets=torch.tensor(targets) if targets is not None else None)  # fmt: skip


def test_behaviour_result_carries_mcnemar_and_confusion() -> None:
    res = compare_behavior(
        _ev(BASE, TRUE), {"m": _ev(MODEL, TRUE)}, class_names=["cat", "dog", "eel"], bootstrap=50
    )["m"]
    # base right, model wrong: x1, x2; model right, base wrong: x4 → exact, 2·(1+3)/8 = 1
    assert res.summary["mcnemar"] == {
        "test": MCNEMAR_EXACT,
        "statistic": None,
        "p": 1.0,
        "base_only": 2,
        "other_only": 1,
    }
    kind, meta, _ = res.wire()
    assert kind == "behavior" and meta["confusion"]["base"] == [[3, 0, 0], [0, 1, 1], [0, 1, 2]]
    assert meta["confusion"]["cells"][1] == {"true": 0, "predicted": 1, "entered": ["x1", "x2"], "left": []}
    # no targets: neither correctness nor a confusion matrix
    res = compare_behavior(_ev(BASE, None), {"m": _ev(MODEL, None)}, bootstrap=50)["m"]
    assert "mcnemar" not in res.summary and res.confusion is None
    assert math.isclose(res.summary["agreement"]["value"], 4 / 8)  # x1, x2, x4, x6 changed


def test_confusion_change_leaves_out_ignored_targets() -> None:
    # x0's target -100 (an "ignore" label): no row for it, the rest as by hand above
    t = np.array([-100, *TRUE[1:]])
    r = confusion_change(t, np.array(BASE), np.array(MODEL), IDS, 3)
    assert r["names"] == ["0", "1", "2"]
    assert r["base"] == [[2, 0, 0], [0, 1, 1], [0, 1, 2]] and r["other"] == [[0, 2, 0], [0, 2, 0], [1, 0, 2]]
