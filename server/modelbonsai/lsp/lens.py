"""The metrics a CodeLens shows above a variant that has been run.

Example: ``acc 97.8% (−0.4 pt vs parent, −1.1 pt vs base) · 302.7 KiB (1.00× vs parent, 4.10× vs
base)``: headline metrics of the model, each with its change against the parent and against the
base model (percentage points for fractions shown as percentages, how many times smaller for
sizes, a relative change otherwise). A variant made from the base shows one change, "vs base".

A swept variant (`name: "layer-{sparsity}"`) makes several models from one line of the file:
VS Code joins every lens of a line into one line and cuts it at the editor's width, so it gets one
summary lens (the ranges of its headline metrics), whose command lists every model on a line of
its own (`sweep_lines`).
"""

from __future__ import annotations

from .protocol import MetricDef, MetricInfo, ModelInfo, model_metrics

_SHORT = {
    "accuracy": "acc",
    "top1_accuracy": "acc",
    "agreement": "agree",
    "perplexity": "ppl",
    "latency": "lat",
    "cosine_agreement": "cos",
    "neighbour_overlap": "nn",
    "next_token_agreement": "next-tok",
}
_MAX_ITEMS = 3
MINUS = "\u2212"


def _fractional(m: MetricInfo) -> bool:
    """Accuracy-like metrics stored as 0..1 (unitless) are shown as percentages."""
    return m["unit"] in ("", "fraction") and 0.0 <= m["value"] <= 1.0 and m["name"] not in ("batch_size",)


def human_bytes(n: float) -> str:
    """Binary units, as file managers and `du -h` show a stored file: 302.7 KiB, 1.21 MiB."""
    for unit, scale, digits in (("GiB", 1024**3, 2), ("MiB", 1024**2, 2), ("KiB", 1024, 1)):
        if n >= scale:
            return f"{n / scale:.{digits}f} {unit}"
    return f"{int(n)} B"


def _signed(x: float, digits: int = 1) -> str:
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return "±0"
    return ("+" if x > 0 else MINUS) + text


def _ratio(r: float) -> str:
    # two decimals below 10: 1.55× must not read as the 1.0× of an unchanged size
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def _kind(m: MetricInfo) -> str:
    if m["unit"] == "B":
        return "size"
    if m["unit"] == "%" or _fractional(m):
        return "percent"
    return "other"


def _change(m: MetricInfo, ref: MetricInfo) -> str | None:
    """The change of `m` against `ref` (same definition), or None when there is none to show."""
    value, was = m["value"], ref["value"]
    kind = _kind(m)
    if kind == "size":
        return _ratio(was / value) if value > 0 else None
    if kind == "percent":
        # a percentage's change is in points (97.8% is 0.4 pt below 98.2%), not relative
        scale = 1.0 if m["unit"] == "%" else 100.0
        return f"{_signed(scale * (value - was))} pt"
    if not was:
        return None
    return f"{_signed(100 * (value - was) / abs(was), 0)}%"


def _value(m: MetricInfo, *, direction: bool) -> str:
    name, value, unit = m["name"], m["value"], m["unit"]
    kind = _kind(m)
    if kind == "size":
        return human_bytes(value)
    short = _SHORT.get(name, name.replace("_", " ")) + (
        ("\u2191" if m["higherIsBetter"] else "\u2193") if direction else ""
    )
    if kind == "percent":
        scale = 1.0 if unit == "%" else 100.0
        return f"{short} {scale * value:.1f}%"
    return f"{short} {value:.3g}{' ' + unit if unit else ''}"


def format_metric(
    m: MetricInfo,
    parent: MetricInfo | None,
    *,
    base: MetricInfo | None = None,
    direction: bool = False,
) -> str:
    """One metric with its change against the parent and against the base: `base` is the base
    model's value when the parent is not the base (None when it is: the change against the parent
    is then the change against the base, said once).
    `direction` adds ↑ / ↓ to the name (another metric shown beside it has the same name).
    A noisy value (its measurement's rounds disagreed) is marked `~`, and so is a change against a
    noisy value: neither is a figure to trust (the lens's tooltip says why)."""
    text = _value(m, direction=direction)
    if m.get("noisy"):
        short = text.split(" ", 1)
        text = f"{short[0]} ~{short[1]}" if len(short) == 2 else f"~{text}"
    changes = []
    for ref, who in ((parent, "parent" if base is not None else "base"), (base, "base")):
        change = None if ref is None else _change(m, ref)
        if ref is not None and change is not None:
            changes.append(f"{'~' if ref.get('noisy') else ''}{change} vs {who}")
    if changes:
        text += f" ({', '.join(changes)})"
    return text


def noisy_note(model: ModelInfo, parent: ModelInfo | None, defs: dict[str, MetricDef]) -> str | None:
    """Why the lens marks figures `~` (its tooltip), or None when nothing is noisy."""
    notes = []
    for who, m in (("", model), ("the parent's ", parent)):
        if m is None:
            continue
        for x in model_metrics(m, defs):
            if x.get("noisy") and x["headline"]:
                notes.append(f"{who}{x['name']} is noisy ({x.get('note') or 'its rounds disagreed'})")
    if not notes:
        return None
    return (
        "; ".join(notes)
        + ". Bonsai: Measure Latency measures it again (the most trustworthy figure is kept)."
    )


def _headline(model: ModelInfo, defs: dict[str, MetricDef]) -> list[MetricInfo]:
    headline = [m for m in model_metrics(model, defs) if m["headline"]]
    # quality first, then size, then the rest (latency): what a user weighs against each other
    headline.sort(key=lambda m: (0 if m["unit"] in ("", "%") else 1 if m["unit"] == "B" else 2, m["name"]))
    return headline[:_MAX_ITEMS]


def metrics_lens_title(
    model: ModelInfo, parent: ModelInfo | None, defs: dict[str, MetricDef], base: ModelInfo | None = None
) -> str:
    """The lens text for a model (empty when it has no headline metric); `defs`: the lineage's
    metric definitions (LineageResult.metrics); `base`: the root of the model's lineage when that
    is not its parent (see `lineage_base`)."""

    # by key: another definition under the same name (a percentage and an error rate both called
    # acc) is another metric; the models come from one reply, so their keys agree
    def values(m: ModelInfo | None) -> dict[str, MetricInfo]:
        return {x["key"]: x for x in (model_metrics(m, defs) if m is not None else [])}

    of_parent, of_base = values(parent), values(base)
    shown = _headline(model, defs)
    names = [m["name"] for m in shown]
    parts = [
        format_metric(
            m,
            of_parent.get(m["key"]),
            base=of_base.get(m["key"]) if base is not None else None,
            direction=names.count(m["name"]) > 1,
        )
        for m in shown
    ]
    if model["status"] == "broken":
        parts.append("broken")
    return " · ".join(parts)


def lineage_base(model: ModelInfo, by_id: dict[str, ModelInfo]) -> ModelInfo | None:
    """The root of `model`'s lineage (its base model) when that is not its parent, else None."""
    parent = by_id.get(model["parent"] or "")
    if parent is None or not parent["parent"]:
        return None
    seen = {model["id"]}
    node = parent
    while node["parent"] and node["parent"] in by_id and node["id"] not in seen:
        seen.add(node["id"])
        node = by_id[node["parent"]]
    return node


def sweep_summary(models: list[ModelInfo], total: int, defs: dict[str, MetricDef]) -> str:
    """One line for the models of a sweep: how many have run, and the range of each headline
    metric (`6 models · acc 91.2–98.0% · 28.1–60.4 KiB`); the lens's command lists each model."""
    parts = [f"{len(models)} models" if len(models) == total else f"{len(models)} of {total} models run"]
    for m in _headline(models[0], defs) if models else []:
        vals = sorted(x["value"] for mm in models for x in model_metrics(mm, defs) if x["key"] == m["key"])
        low, high = (_value({**m, "value": v}, direction=False) for v in (vals[0], vals[-1]))
        if low == high:
            parts.append(low)
        elif _kind(m) == "size":
            # one unit when both ends share it: "28.1–60.4 KiB"
            num, _, unit = low.partition(" ")
            parts.append(f"{num}–{high}" if high.endswith(f" {unit}") else f"{low}–{high}")
        else:
            # the name once and the unit once: "acc 91.2–98.0%", "ppl 3.1–7.28"
            name, _, lo = low.partition(" ")
            hi = high.partition(" ")[2]
            unit = "%" if _kind(m) == "percent" else ""
            parts.append(f"{name} {lo.removesuffix(unit)}–{hi}")
    broken = sum(1 for m in models if m["status"] == "broken")
    if broken:
        parts.append(f"{broken} broken")
    return " · ".join(parts)
