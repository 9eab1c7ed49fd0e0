"""Behaviour comparison from task Evaluations (predictions and outputs per instance).

Instances are matched by id (the base's order); ids only one side has are reported.

Classification (outputs [N, C] probabilities, or logits, softmaxed; predictions [N]):
agreement with the base (Wilson interval), a transition table base prediction → new prediction
with counts and instance ids, per-group metric deltas, and per instance: KL(base ‖ other),
top-1 agreement, margin change (margin = top-1 minus runner-up probability; other − base) and
change of the true-class probability. With targets also McNemar's paired test of the two
models' correctness (`summary["mcnemar"]`, :func:`.stats.mcnemar`) and the change of the
confusion matrix (`confusion`, :func:`confusion_change`).

Causal LM (outputs [N, T] log-probability of each target token, predictions [N, T]): per-token
top-1 agreement and change of the target log-prob, per instance and per group, and the
generations of both models side by side (`extras["generations"]`). The per-token KL needs whole
next-token distributions, which an Evaluation does not keep: :func:`lm_token_divergence` runs
both models on the task's batches and computes it without storing [N, T, V] tensors; its output
passed as `token_divergence` adds tensors `token_kl` [N, T] and `kl` [N] (mean over tokens; NaN
rows for instances it did not cover) and `mean_kl` to the summary and to every group.

Every group carries `ids`, the instance ids it holds (in the order of `ids`).

Embeddings (outputs [N, D], no predictions): per-instance cosine and relative L2.

**Intervals.** Proportions (accuracy, agreement) of a group carry a Wilson score interval; the
delta of a paired per-instance metric (other − base on the same instances) carries a percentile
bootstrap interval over instances (seeded, `bootstrap` resamples). Tokens of one instance are
not independent, so LM groups resample instances, never tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..tasks.base import Evaluation
from .control import CompareError, Control
from .stats import mcnemar

KIND = "behavior"
Z95 = 1.959963984540054
#: The confusion change lists at most this many classes (those whose counts changed most): a
#: matrix of a thousand ImageNet classes is neither readable nor small on the wire.
CONFUSION_CLASSES = 30


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_mean(
    values: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-instance `values` (NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 4_000_000 // v.size)  # bound the index matrix to ~32 MB
    for i in range(0, resamples, step):
        k = min(step, resamples - i)
        means[i : i + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


@dataclass
class BehaviorComparison:
    base: str
    other: str
    task_kind: str  # "classification" | "causal_lm" | "embedding"
    ids: list[str]
    summary: dict[str, Any]
    groups: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    per_instance: dict[str, np.ndarray] = field(default_factory=dict)
    generations: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    #: classification with targets: :func:`confusion_change`'s result (None otherwise)
    confusion: dict[str, Any] | None = None

    def wire(self) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "base": self.base,
            "other": self.other,
            "task_kind": self.task_kind,
            "ids": self.ids,
            "summary": self.summary,
            "groups": self.groups,
            "transitions": self.transitions,
            "generations": self.generations,
            "missing": self.missing,
            "confusion": self.confusion,
        }
        return KIND, meta, {k: np.asarray(v) for k, v in self.per_instance.items()}


def evaluation_kind(ev: Evaluation) -> str:
    """ "classification", "causal_lm" or "embedding", from the shapes of an Evaluation."""
    if ev.predictions is not None and ev.predictions.dim() == 2:
        return "causal_lm"
    if ev.predictions is not None and ev.predictions.dim() == 1:
        return "classification"
    if ev.outputs.dim() == 2:
        return "embedding"
    raise CompareError(
        f"cannot compare behaviour of outputs shaped {list(ev.outputs.shape)} without predictions"
    )


def _probs(x: torch.Tensor) -> torch.Tensor:
    """Rows that already are distributions stay; anything else is treated as logits."""
    x = x.double()
    if bool((x >= 0).all()) and bool(
        torch.allclose(x.sum(-1), torch.ones(x.shape[:-1], dtype=x.dtype), atol=1e-3)
    ):
        return x / x.sum(-1, keepdim=True)
    return x.softmax(-1)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row in nats; 0·log0 = 0, p>0 where q=0 gives +inf (reported, not hidden)."""
    logp = torch.where(p > 0, p.log(), torch.zeros((), dtype=p.dtype))
    logq = q.log()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros((), dtype=p.dtype))
    return terms.sum(-1)


def _margin(p: torch.Tensor) -> torch.Tensor:
    if p.shape[-1] < 2:
        return torch.ones(p.shape[:-1], dtype=p.dtype)
    top = p.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def _align(
    base: Evaluation, other: Evaluation
) -> tuple[list[str], torch.Tensor, torch.Tensor, dict[str, list[str]]]:
    pos_o = {str(i): k for k, i in enumerate(other.ids)}
    keep_b, keep_o, ids = [], [], []
    for k, i in enumerate(base.ids):
        j = pos_o.get(str(i))
        if j is not None:
            keep_b.append(k)
            keep_o.append(j)
            ids.append(str(i))
    base_ids = {str(i) for i in base.ids}
    missing = {
        "only_in_base": [str(i) for i in base.ids if str(i) not in pos_o],
        "only_in_other": [str(i) for i in other.ids if str(i) not in base_ids],
    }
    if not ids:
        raise CompareError("the two evaluations share no instance ids; were they made on the same task data?")
    return ids, torch.tensor(keep_b), torch.tensor(keep_o), missing


def _groups_of(
    ids: Sequence[str], groupings: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str, np.ndarray]]:
    """(grouping, label, boolean index over ids) for every group of every grouping."""
    out = []
    for gname, mapping in groupings.items():
        labels = np.array([str(mapping.get(i, "(none)")) for i in ids], dtype=object)
        for label in sorted(set(labels.tolist())):
            out.append((gname, label, labels == label))
    return out


def _prop(successes: int, n: int) -> dict[str, Any]:
    ci = wilson(successes, n)
    return {"value": successes / n if n else None, "ci": list(ci) if ci else None}


def _classification(
    res: BehaviorComparison,
    b: Evaluation,
    o: Evaluation,
    ib: torch.Tensor,
    io: torch.Tensor,
    groups: list[tuple[str, str, np.ndarray]],
    class_names: Sequence[str] | None,
    resamples: int,
    seed: int,
) -> None:
    assert b.predictions is not None and o.predictions is not None
    pb = b.predictions[ib].long()
    po = o.predictions[io].long()
    agree = (pb == po).numpy()
    n = len(agree)
    probs_b = _probs(b.outputs[ib])
    probs_o = _probs(o.outputs[io])
    if probs_b.shape != probs_o.shape:
        raise CompareError(f"output shapes differ: base {list(probs_b.shape)} vs other {list(probs_o.shape)}")
    kl = _kl(probs_b, probs_o).numpy()
    margin_change = (_margin(probs_o) - _margin(probs_b)).numpy()
    res.per_instance = {
        "agree": agree,
        "kl": kl.astype(np.float32),
        "margin_change": margin_change.astype(np.float32),
    }
    res.summary = {
        "instances": n,
        "agreement": _prop(int(agree.sum()), n),
        "mean_kl": float(np.mean(kl[np.isfinite(kl)])) if np.isfinite(kl).any() else None,
        "infinite_kl": int((~np.isfinite(kl)).sum()),
        "mean_margin_change": float(margin_change.mean()),
    }
    targets = b.targets[ib].long() if b.targets is not None else None
    if targets is not None:
        cb = (pb == targets).numpy()
        co = (po == targets).numpy()
        rows = torch.arange(n)
        res.per_instance["p_true_change"] = (
            (probs_o[rows, targets] - probs_b[rows, targets]).numpy().astype(np.float32)
        )
        res.per_instance["correct_base"] = cb
        res.per_instance["correct_other"] = co
        res.summary["accuracy_base"] = _prop(int(cb.sum()), n)
        res.summary["accuracy_other"] = _prop(int(co.sum()), n)
        res.summary["accuracy_delta"] = _delta(co, cb, resamples, seed)
        # only the discordant instances tell the two accuracies apart (paired, unlike two intervals)
        res.summary["mcnemar"] = mcnemar(int((cb & ~co).sum()), int((co & ~cb).sum()))
        res.confusion = confusion_change(
            targets.numpy(), pb.numpy(), po.numpy(), res.ids, probs_b.shape[-1], class_names
        )

    def name(c: int) -> str:
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)

    pairs: dict[tuple[int, int], list[str]] = {}
    for k, (x, y) in enumerate(zip(pb.tolist(), po.tolist(), strict=True)):
        pairs.setdefault((x, y), []).append(res.ids[k])
    res.transitions = [
        {"base": name(x), "other": name(y), "base_index": x, "other_index": y, "count": len(v), "ids": v}
        for (x, y), v in sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
    for gname, label, mask in groups:
        m = int(mask.sum())
        g: dict[str, Any] = {"grouping": gname, "group": label, "count": m,
                             "agreement": _prop(int(agree[mask].sum()), m)}  # fmt: skip
        if targets is not None:
            g["accuracy_base"] = _prop(int(cb[mask].sum()), m)
            g["accuracy_other"] = _prop(int(co[mask].sum()), m)
            g["accuracy_delta"] = _delta(co[mask], cb[mask], resamples, seed)
        g["mean_kl"] = float(np.mean(kl[mask])) if m else None
        res.groups.append(g)


def confusion_change(
    targets: np.ndarray,
    base_pred: np.ndarray,
    other_pred: np.ndarray,
    ids: Sequence[str],
    classes: int,
    class_names: Sequence[str] | None = None,
    limit: int = CONFUSION_CLASSES,
) -> dict[str, Any]:
    """The confusion matrices (rows: true class, columns: predicted) of the base and the other
    model on the same instances, and which instances moved between their cells.

    `classes` (the output width) fixes the matrix size; a target or prediction outside it
    widens it. Returns {"classes": class indices shown (ascending), "names", "classes_total",
    "base", "other": count matrices over the shown classes (lists of lists), "cells": one entry
    per cell some instance entered or left — {"true", "predicted" (class indices), "entered":
    ids the other model puts there and the base did not, "left": ids the base put there and the
    other does not} — ordered by |change|, then entries, then position}. A cell's change
    (other − base) is len(entered) − len(left). With more than `limit` classes, the `limit`
    classes with the most instances moving in or out of their row or column are shown."""
    t = np.asarray(targets, dtype=np.int64)
    b = np.asarray(base_pred, dtype=np.int64)
    o = np.asarray(other_pred, dtype=np.int64)
    # a negative target (an "ignore" label) has no row: those instances stay out of the matrix
    valid = (t >= 0) & (b >= 0) & (o >= 0)
    if not valid.all():
        t, b, o = t[valid], b[valid], o[valid]
        ids = [i for i, v in zip(ids, valid.tolist(), strict=True) if v]
    c = max(int(classes), int(max(t.max(initial=-1), b.max(initial=-1), o.max(initial=-1))) + 1)
    base_m = np.bincount(t * c + b, minlength=c * c).reshape(c, c)
    other_m = np.bincount(t * c + o, minlength=c * c).reshape(c, c)
    moved = b != o
    # per class: instances moving in or out of a cell of its row (true) or column (predicted)
    traffic = np.bincount(t[moved], minlength=c) * 2 + np.bincount(b[moved], minlength=c)
    traffic += np.bincount(o[moved], minlength=c)
    if c <= limit:
        shown = np.arange(c)
    else:  # the busiest classes; ties to the lower index (stable sort)
        shown = np.sort(np.argsort(-traffic, kind="stable")[:limit])
    keep = np.zeros(c, bool)
    keep[shown] = True
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for k in np.flatnonzero(moved & keep[t]).tolist():
        ti, bi, oi = int(t[k]), int(b[k]), int(o[k])
        if keep[oi]:
            cells.setdefault((ti, oi), {"true": ti, "predicted": oi, "entered": [], "left": []})[
                "entered"
            ].append(ids[k])
        if keep[bi]:
            cells.setdefault((ti, bi), {"true": ti, "predicted": bi, "entered": [], "left": []})[
                "left"
            ].append(ids[k])
    order = sorted(
        cells.values(),
        key=lambda x: (-abs(len(x["entered"]) - len(x["left"])), -(len(x["entered"]) + len(x["left"])),
                       x["true"], x["predicted"]),
    )  # fmt: skip

    def name(i: int) -> str:
        return str(class_names[i]) if class_names and 0 <= i < len(class_names) else str(i)

    sub = np.ix_(shown, shown)
    return {
        "classes": shown.tolist(),
        "names": [name(int(i)) for i in shown],
        "classes_total": c,
        "base": base_m[sub].tolist(),
        "other": other_m[sub].tolist(),
        "cells": order,
    }


def _delta(other: np.ndarray, base: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    diff = other.astype(np.float64) - base.astype(np.float64)
    if diff.ndim > 1:
        diff = np.nanmean(diff, axis=tuple(range(1, diff.ndim)))
    ci = bootstrap_mean(diff, resamples, seed)
    return {"value": float(np.nanmean(diff)) if diff.size else None, "ci": list(ci) if ci else None}


def _causal_lm(
    res: BehaviorComparison,
    b: Evaluation,
    o: Evaluation,
    ib: torch.Tensor,
    io: torch.Tensor,
    groups: list[tuple[str, str, np.ndarray]],
    resamples: int,
    seed: int,
) -> None:
    assert b.predictions is not None and o.predictions is not None
    pb, po = b.predictions[ib], o.predictions[io]
    if pb.shape != po.shape:
        raise CompareError(
            f"token predictions differ in shape: base {list(pb.shape)} vs other {list(po.shape)}"
        )
    agree = (pb == po).numpy()
    dlogp = (o.outputs[io].double() - b.outputs[ib].double()).numpy()
    res.per_instance = {
        "token_agree": agree,
        "token_logp_change": dlogp.astype(np.float32),
        "agree": agree.mean(1).astype(np.float32),
        "logp_change": dlogp.mean(1).astype(np.float32),
    }
    n_tok = agree.size
    res.summary = {
        "instances": len(res.ids),
        "tokens": n_tok,
        # per-instance bootstrap: tokens of one instance are correlated
        "token_agreement": {
            "value": float(agree.mean()),
            "ci": _ci_list(bootstrap_mean(agree.mean(1), resamples, seed)),
        },
        "logp_change": _delta(o.outputs[io].numpy(), b.outputs[ib].numpy(), resamples, seed),
    }
    if b.targets is not None:
        t = b.targets[ib]
        res.summary["token_accuracy_base"] = float((pb == t).double().mean())
        res.summary["token_accuracy_other"] = float((po == t).double().mean())
        res.summary["token_accuracy_delta"] = _delta((po == t).numpy(), (pb == t).numpy(), resamples, seed)
    for gname, label, mask in groups:
        m = int(mask.sum())
        res.groups.append({
            "grouping": gname, "group": label, "count": m,
            "token_agreement": {"value": float(agree[mask].mean()) if m else None,
                                "ci": _ci_list(bootstrap_mean(agree[mask].mean(1), resamples, seed)) if m else None},
            "logp_change": _delta(dlogp[mask], np.zeros_like(dlogp[mask]), resamples, seed),
        })  # fmt: skip
    gb = b.extras.get("generations") or []
    go = o.extras.get("generations") or []
    for k in range(max(len(gb), len(go))):
        x = gb[k] if k < len(gb) else {}
        y = go[k] if k < len(go) else {}
        tb, to = list(x.get("tokens") or []), list(y.get("tokens") or [])
        same = next(
            (i for i, (u, v) in enumerate(zip(tb, to, strict=False)) if u != v), min(len(tb), len(to))
        )
        res.generations.append({
            "prompt": x.get("prompt", y.get("prompt")),
            "base": x.get("text"), "other": y.get("text"),
            "first_difference": same if tb != to else None,  # token index where they part ways
        })  # fmt: skip


def _ci_list(ci: tuple[float, float] | None) -> list[float] | None:
    return list(ci) if ci else None


def _embedding(res: BehaviorComparison, b: Evaluation, o: Evaluation, ib: torch.Tensor, io: torch.Tensor,
               groups: list[tuple[str, str, np.ndarray]], resamples: int, seed: int) -> None:  # fmt: skip
    eb, eo = b.outputs[ib].double(), o.outputs[io].double()
    if eb.shape != eo.shape:
        raise CompareError(f"embedding shapes differ: base {list(eb.shape)} vs other {list(eo.shape)}")
    cos = torch.nn.functional.cosine_similarity(eb, eo, dim=1).numpy()
    rel = ((eo - eb).norm(dim=1) / eb.norm(dim=1)).numpy()
    res.per_instance = {"cosine": cos.astype(np.float32), "rel_l2": rel.astype(np.float32)}
    res.summary = {"instances": len(res.ids), "cosine": {"value": float(cos.mean()), "ci": _ci_list(bootstrap_mean(cos, resamples, seed))},
                   "rel_l2": {"value": float(rel.mean()), "ci": _ci_list(bootstrap_mean(rel, resamples, seed))}}  # fmt: skip
    for gname, label, mask in groups:
        res.groups.append({"grouping": gname, "group": label, "count": int(mask.sum()),
                           "cosine": {"value": float(cos[mask].mean()), "ci": _ci_list(bootstrap_mean(cos[mask], resamples, seed))}})  # fmt: skip


def compare_behavior(
    base: Evaluation,
    others: Mapping[str, Evaluation],
    *,
    base_id: str = "base",
    groupings: Mapping[str, Mapping[str, str]] | None = None,
    class_names: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    control: Control | None = None,
    token_divergence: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, BehaviorComparison]:
    """Compare each evaluation in `others` with `base` (see module doc). `groupings` is the
    task's `groupings()`; for classification with targets a "label" grouping is added when the
    task gives none. `token_divergence` (causal LM) is :func:`lm_token_divergence`'s output,
    other id -> {"ids", "kl": [n, T]}; its per-token KL joins those models' results."""
    ctl = control or Control()
    if not others:
        raise CompareError("nothing to compare the base with: give at least one other model")
    kind = evaluation_kind(base)
    out: dict[str, BehaviorComparison] = {}
    for k, (oid, ev) in enumerate(others.items()):
        ctl.step(k / len(others), f"comparing behaviour of {oid}")
        if evaluation_kind(ev) != kind:
            raise CompareError(f"model '{oid}' was evaluated as {evaluation_kind(ev)}, the base as {kind}")
        ids, ib, io, missing = _align(base, ev)
        gmap = dict(groupings or {})
        if kind == "classification" and not gmap and base.targets is not None:
            names = class_names
            gmap["label"] = {
                i: (names[t] if names and 0 <= t < len(names) else str(t))
                for i, t in zip(ids, base.targets[ib].tolist(), strict=True)
            }
        groups = _groups_of(ids, gmap)
        res = BehaviorComparison(base_id, oid, kind, ids, {}, missing=missing)
        if kind == "classification":
            _classification(res, base, ev, ib, io, groups, class_names, bootstrap, seed)
        elif kind == "causal_lm":
            _causal_lm(res, base, ev, ib, io, groups, bootstrap, seed)
        else:
            _embedding(res, base, ev, ib, io, groups, bootstrap, seed)
        if kind == "causal_lm" and token_divergence and oid in token_divergence:
            _token_kl(res, token_divergence[oid], groups)
        for g, (_, _, mask) in zip(res.groups, groups, strict=True):
            g["ids"] = [
                i for i, m in zip(ids, mask.tolist(), strict=True) if m
            ]  # the group's rows, for the browser
        out[oid] = res
    ctl.step(1.0, "behaviour compared")
    return out


def _token_kl(
    res: BehaviorComparison, div: Mapping[str, Any], groups: list[tuple[str, str, np.ndarray]]
) -> None:
    """Join per-token KL (from :func:`lm_token_divergence`, matched by instance id) to an LM
    result: `token_kl` [N, T] and `kl` [N], NaN for instances the divergence run did not cover."""
    kl = np.asarray(div.get("kl"), dtype=np.float32)
    n, t = res.per_instance["token_agree"].shape
    if kl.size == 0:
        return
    if kl.ndim != 2 or kl.shape[1] != t:
        raise CompareError(
            f"per-token KL has shape {list(kl.shape)}; the evaluations have {t} tokens per instance"
        )
    row = {str(i): k for k, i in enumerate(div.get("ids") or [])}
    if len(row) != kl.shape[0]:
        raise CompareError(f"per-token KL has {kl.shape[0]} rows for {len(row)} instance ids")
    token_kl = np.full((n, t), np.nan, dtype=np.float32)
    for k, i in enumerate(res.ids):
        j = row.get(i)
        if j is not None:
            token_kl[k] = kl[j]
    covered = ~np.isnan(token_kl).all(1)
    inst = np.full(n, np.nan, dtype=np.float32)
    inst[covered] = token_kl[covered].mean(1)
    res.per_instance["token_kl"] = token_kl
    res.per_instance["kl"] = inst

    def mean(mask: np.ndarray) -> float | None:
        m = mask & covered
        return float(token_kl[m].astype(np.float64).mean()) if m.any() else None

    res.summary["mean_kl"] = mean(np.ones(n, bool))  # per token, over the covered instances
    res.summary["token_kl_instances"] = int(covered.sum())
    for g, (_, _, mask) in zip(res.groups, groups, strict=True):
        g["mean_kl"] = mean(mask)


@torch.no_grad()
def lm_token_divergence(
    base: nn.Module,
    others: Mapping[str, nn.Module],
    task: Any,
    *,
    device: torch.device | str = "cpu",
    instances: int = 64,
    batch_size: int = 8,
    control: Control | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-token KL(base ‖ other) and top-1 agreement of next-token distributions, computed
    batch by batch from `task.forward` logits [B, T, V] (nothing of size V is kept).

    Returns other id -> {"ids", "kl": [N, T] float32, "top1_agree": [N, T] bool, "mean_kl"}."""
    ctl = control or Control()
    dev = torch.device(device)
    acc: dict[str, dict[str, list[Any]]] = {oid: {"kl": [], "agree": []} for oid in others}
    ids: list[str] = []
    for batch in task.eval_batches(batch_size):
        if len(ids) >= instances:
            break
        take = min(len(batch.ids), instances - len(ids))
        b = task.to_device(batch, dev)
        lb = task.forward(base, b)[:take].float().log_softmax(-1)
        if lb.dim() != 3:
            raise CompareError(
                f"per-token divergence needs logits [batch, tokens, vocabulary]; got {list(lb.shape)}"
            )
        pb = lb.exp()
        for oid, model in others.items():
            lo = task.forward(model, b)[:take].float().log_softmax(-1)
            if lo.shape != lb.shape:
                raise CompareError(
                    f"model '{oid}' returned logits {list(lo.shape)}, the base {list(lb.shape)}"
                )
            kl = (pb * (lb - lo)).sum(-1).clamp_min(0.0)  # tiny negatives are rounding
            acc[oid]["kl"].append(kl.cpu())
            acc[oid]["agree"].append((lb.argmax(-1) == lo.argmax(-1)).cpu())
        ids.extend(str(i) for i in batch.ids[:take])
        ctl.step(len(ids) / instances, f"per-token divergence: {len(ids)}/{instances}")
    out = {}
    for oid, a in acc.items():
        kl = torch.cat(a["kl"]).numpy().astype(np.float32) if a["kl"] else np.zeros((0, 0), np.float32)
        agree = torch.cat(a["agree"]).numpy() if a["agree"] else np.zeros((0, 0), bool)
        out[oid] = {"ids": ids, "kl": kl, "top1_agree": agree, "mean_kl": float(kl.mean()) if kl.size else None,
                    "top1_agreement": float(agree.mean()) if agree.size else None}  # fmt: skip
    return out
