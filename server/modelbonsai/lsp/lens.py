"""The one-line metrics summary a CodeLens shows above a variant that has been run.

Example: ``acc 97.8% (−0.4) · 0.31 MB (4.1×)``: headline metrics of the model, each with its
change against the parent (points for fractions shown as percentages, a size ratio for sizes,
a relative change otherwise).
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
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e5:  # 0.31 MB reads better than 310 KB next to model sizes
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} KB"
    return f"{int(n)} B"


def _signed(x: float, digits: int = 1) -> str:
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return "±0"
    return ("+" if x > 0 else MINUS) + text


def format_metric(m: MetricInfo, parent: MetricInfo | None, *, direction: bool = False) -> str:
    """`direction` adds ↑ / ↓ to the name (another metric shown beside it has the same name).
    A noisy value (its measurement's rounds disagreed) is marked `~`, and so is a change against
    a noisy parent value: neither is a figure to trust (the lens's tooltip says why)."""
    text = _format_metric(m, parent, direction=direction)
    if m.get("noisy"):
        short = text.split(" ", 1)
        text = f"{short[0]} ~{short[1]}" if len(short) == 2 else f"~{text}"
    if parent is not None and parent.get("noisy") and text.endswith(")") and " (" in text:
        head, _, change = text.rpartition(" (")
        text = f"{head} (~{change}"
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
    return "; ".join(notes) + ". Bonsai: Measure Latency measures it again (the most trustworthy figure is kept)."


def _format_metric(m: MetricInfo, parent: MetricInfo | None, *, direction: bool = False) -> str:
    name, value, unit = m["name"], m["value"], m["unit"]
    if unit == "B":
        text = human_bytes(value)
        if parent is not None and value > 0:
            text += f" ({parent['value'] / value:.1f}×)"
        return text
    short = _SHORT.get(name, name.replace("_", " ")) + (("\u2191" if m["higherIsBetter"] else "\u2193") if direction else "")
    if unit == "%" or _fractional(m):
        # a percentage's change is shown in points (97.8% (−0.4)), not relative to the parent
        scale = 1.0 if unit == "%" else 100.0
        text = f"{short} {scale * value:.1f}%"
        if parent is not None:
            text += f" ({_signed(scale * (value - parent['value']))})"
        return text
    shown = f"{value:.3g}"
    text = f"{short} {shown}{' ' + unit if unit else ''}"
    if parent is not None and parent["value"]:
        text += f" ({_signed(100 * (value - parent['value']) / abs(parent['value']), 0)}%)"
    return text


def metrics_lens_title(model: ModelInfo, parent: ModelInfo | None, defs: dict[str, MetricDef]) -> str:
    """The lens text for a model (empty when it has no headline metric); `defs`: the lineage's
    metric definitions (LineageResult.metrics)."""
    headline = [m for m in model_metrics(model, defs) if m["headline"]]
    # quality first, then size, then the rest (latency): what a user weighs against each other
    headline.sort(key=lambda m: (0 if m["unit"] in ("", "%") else 1 if m["unit"] == "B" else 2, m["name"]))
    # by key: another definition under the same name (a percentage and an error rate both called
    # acc) is another metric; parent and child come from one reply, so their keys agree
    by_key = {m["key"]: m for m in (model_metrics(parent, defs) if parent is not None else [])}
    shown = headline[:_MAX_ITEMS]
    names = [m["name"] for m in shown]
    parts = [format_metric(m, by_key.get(m["key"]), direction=names.count(m["name"]) > 1) for m in shown]
    if model["status"] == "broken":
        parts.append("broken")
    return " · ".join(parts)
