"""The numbers the sample READMEs quote, generated from the samples' stored results.

    python scripts/sample_numbers.py            # read each sample's store, refresh its numbers.json
                                                # and the generated sections of its README
    python scripts/sample_numbers.py --check    # exit 1 if a README or numbers.json is out of date
    python scripts/sample_numbers.py --only digits --workspace DIR   # read the store in DIR

`make demo` runs it after the sample runs (samples/demo.py), so the story a README tells and the
Model Map, Behaviors and `bonsai ls` show come from the same models.

A README's generated parts sit between markers, each the output of one section function:

    <!-- numbers:digits-classes -->
    ...
    <!-- /numbers:digits-classes -->

Sections are registered in `SECTIONS` by `@section(name, sample=...)`; a section is a function
`(Results) -> str` (Markdown) that reads what it quotes through `Results` (metrics, class counts,
transitions). Add a section by writing one such function here and its two marker lines in the
README. Two steps keep the READMEs checkable without the samples' models: reading the store records
every answer a section asked for in `samples/<name>/numbers.json` (committed), and rendering from
that file gives the README's sections back exactly, so a test can check the README against it on a
fresh clone, and against the store where the sample has been run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
FACTS_FILE = "numbers.json"
MARKERS = re.compile(
    r"(?P<open><!-- numbers:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(?P<close><!-- /numbers:(?P=name) -->)",
    re.S,
)


class NumbersError(Exception):
    """Something a section needs is not there (a model not run, a marker missing)."""


# -- what a section reads -------------------------------------------------------------------------


class Results:
    """A sample's stored results as a section asks for them.

    Built on a store (`from_store`), every answer is recorded in `facts`; built on recorded facts
    (`from_facts`), the same questions get the same answers back, and a question the facts do not
    hold is an error naming it (the numbers.json is older than the README's sections)."""

    def __init__(self, sample: str, facts: dict[str, Any], store: Any | None = None):
        self.sample = sample
        self.facts = facts
        self._store = store
        self._evaluations: dict[str, Any] = {}

    @classmethod
    def from_store(cls, sample: str, workspace: Path) -> Results:
        from modelbonsai.store import LineageStore

        if not (workspace / ".bonsai" / "lineage.sqlite").is_file():
            raise NumbersError(
                f"{workspace} has no stored results (.bonsai/lineage.sqlite); run the sample first"
            )
        return cls(sample, {}, LineageStore.open(workspace))

    @classmethod
    def from_facts(cls, sample: str, facts: dict[str, Any]) -> Results:
        return cls(sample, facts)

    def _ask(self, kind: str, key: str, compute: Callable[[], Any]) -> Any:
        table = self.facts.setdefault(kind, {})
        if key in table:
            return table[key]
        if self._store is None:
            raise NumbersError(
                f"samples/{self.sample}/{FACTS_FILE} has no {kind} '{key}': run the sample and "
                "`python scripts/sample_numbers.py` to record it"
            )
        table[key] = compute()
        return table[key]

    # the questions --------------------------------------------------------------------------------
    def has(self, model: str) -> bool:
        """Whether the sample's run made `model`."""
        return bool(self._ask("present", model, lambda: self._record(model) is not None))

    def metric(self, model: str, name: str) -> float:
        """A stored metric of a model (accuracy in %, stored_size in bytes, ...)."""

        def compute() -> float:
            rec = self._need(model)
            for m in self._store.metrics(rec.id):
                if m.name == name:
                    return float(m.value)
            raise NumbersError(f"{model} has no metric '{name}'")

        return float(self._ask("metric", f"{model} {name}", compute))

    def model_id(self, model: str) -> str:
        """The stored model a name stands for (two variants that made the same model share it)."""
        return str(self._ask("model_id", model, lambda: str(self._need(model).id)))

    def version(self, model: str, library: str) -> str:
        """The version of a library (torch, python, ...) the model was made with."""
        return str(
            self._ask(
                "version", f"{model} {library}", lambda: str(self._need(model).versions.get(library, "?"))
            )
        )

    def class_counts(self, model: str) -> dict[str, int]:
        """Evaluation instances per true class (the class names of the predictions)."""

        def compute() -> dict[str, int]:
            ev = self._evaluation(model)
            if ev.targets is None:
                raise NumbersError(f"{model}'s evaluation has no labels")
            counts = Counter(int(t) for t in ev.targets.tolist())
            return {str(k): counts[k] for k in sorted(counts)}

        return dict(self._ask("class_counts", model, compute))

    def transitions(self, base: str, model: str) -> list[tuple[str, str, int]]:
        """(base prediction, model prediction, count) for every instance the two predict apart,
        most frequent first, ties by the classes: the transition table of Behaviors."""

        def compute() -> list[list[Any]]:
            b, o = self._evaluation(base), self._evaluation(model)
            if list(b.ids) != list(o.ids):
                raise NumbersError(f"{base} and {model} were evaluated on different instances")
            pairs = Counter(
                (int(x), int(y))
                for x, y in zip(b.predictions.tolist(), o.predictions.tolist(), strict=True)
                if x != y
            )
            return [
                [str(x), str(y), n] for (x, y), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
            ]

        return [
            (str(a), str(b), int(n)) for a, b, n in self._ask("transitions", f"{base} -> {model}", compute)
        ]

    # store access -----------------------------------------------------------------------------
    def _record(self, model: str) -> Any:
        from modelbonsai.store import StoreError

        try:
            rec = self._store.get_model(model)
        except StoreError:
            return None
        return rec if rec.status == "ok" else None

    def _need(self, model: str) -> Any:
        rec = self._record(model)
        if rec is None:
            raise NumbersError(f"the {self.sample} sample's store has no model '{model}'; run the sample")
        return rec

    def _evaluation(self, model: str) -> Any:
        if model not in self._evaluations:
            from modelbonsai.runner import load_evaluation

            ev = load_evaluation(self._store, self._need(model))
            if ev is None or ev.predictions is None:
                raise NumbersError(f"{model} has no stored predictions")
            self._evaluations[model] = ev
        return self._evaluations[model]


# -- the registry ---------------------------------------------------------------------------------

SectionFn = Callable[[Results], str]


@dataclass(frozen=True)
class Section:
    name: str
    sample: str
    fn: SectionFn


SECTIONS: dict[str, Section] = {}


def section(name: str, *, sample: str) -> Callable[[SectionFn], SectionFn]:
    """Register `fn` as the generator of the README section `name` of `sample`."""

    def register(fn: SectionFn) -> SectionFn:
        if name in SECTIONS:
            raise ValueError(f"section '{name}' is registered twice")
        SECTIONS[name] = Section(name, sample, fn)
        return fn

    return register


def sections_of(sample: str) -> list[Section]:
    return [s for s in SECTIONS.values() if s.sample == sample]


# -- formatting -----------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{x:.1f} %"


def pt(x: float) -> str:
    """A change in percentage points, signed with a real minus sign."""
    return ("−" if x < 0 else "+") + f"{abs(x):.1f} pt"


def _off_diagonal(rows: list[tuple[str, str, int]], top: int) -> str:
    if not rows:
        return "none"
    return ", ".join(f"{a} → {b} ({n})" for a, b, n in rows[:top])


# -- digits ---------------------------------------------------------------------------------------

DIGITS_BASE = "digits-cnn"
#: The models the digits story quotes, in the order of its table.
DIGITS_MODELS = (
    "layer-0.3-bn",
    "layer-0.4-bn",
    "layer-0.5-bn",
    "layer-0.4-kd",
    "layer-0.5-kd",
    "global-0.7-bn",
    "global-0.9-ft",
    "int8",
    "int4",
)


def _class_acc(r: Results, model: str, cls: str) -> float:
    return r.metric(model, f"class_accuracy/{cls}")


def _hit(r: Results, model: str, cls: str, n: int) -> str:
    return f"{round(_class_acc(r, model, cls) * n / 100)}/{n}"


def _worst_class(r: Results, model: str, classes: list[str]) -> str | None:
    """The class whose accuracy falls most against the base (ties: the first); None when no
    class falls."""
    worst = min(
        classes, key=lambda c: (_class_acc(r, model, c) - _class_acc(r, DIGITS_BASE, c), classes.index(c))
    )
    return worst if _class_acc(r, model, worst) < _class_acc(r, DIGITS_BASE, worst) else None


def _changed(r: Results, model: str) -> str:
    n = sum(c for _a, _b, c in r.transitions(DIGITS_BASE, model))
    return f"{n} prediction{'' if n == 1 else 's'} of the base changed"


@section("digits-classes", sample="digits")
def digits_classes(r: Results) -> str:
    counts = r.class_counts(DIGITS_BASE)
    classes = list(counts)
    total = sum(counts.values())
    base_acc = r.metric(DIGITS_BASE, "accuracy")
    rows = [
        f"Measured with this sample ({total} evaluation images): each model's accuracy, the class "
        "that lost most against the base, and the most frequent transitions (base prediction → "
        "model prediction, with their counts), as Behaviors shows them.",
        "",
        "| model | accuracy | Δ vs base | class that lost most | its accuracy (base) | most frequent transitions |",
        "|---|---|---|---|---|---|",
        f"| {DIGITS_BASE} (base) | {pct(base_acc)} | | | | |",
    ]
    for m in DIGITS_MODELS:
        if not r.has(m):
            continue
        acc = r.metric(m, "accuracy")
        worst = _worst_class(r, m, classes)
        lost = (
            f"{worst} | {pct(_class_acc(r, m, worst))} ({_hit(r, m, worst, counts[worst])}; "
            f"base {pct(_class_acc(r, DIGITS_BASE, worst))})"
            if worst is not None
            else "none | —"
        )
        rows.append(
            f"| {m} | {pct(acc)} | {pt(acc - base_acc)} | {lost} | {_off_diagonal(r.transitions(DIGITS_BASE, m), 3)} |"
        )
    return "\n".join(rows) + "\n"


@section("digits-story", sample="digits")
def digits_story(r: Results) -> str:
    counts = r.class_counts(DIGITS_BASE)
    classes = list(counts)
    base_acc = r.metric(DIGITS_BASE, "accuracy")
    lines = []
    for m in ("layer-0.4-bn", "layer-0.5-bn"):
        acc = r.metric(m, "accuracy")
        worst = _worst_class(r, m, classes)
        text = f"- **{m}**: {pct(acc)} overall ({pt(acc - base_acc)})"
        if worst is not None:
            drop = _class_acc(r, m, worst) - _class_acc(r, DIGITS_BASE, worst)
            text += (
                f"; class {worst} falls most, to {pct(_class_acc(r, m, worst))} "
                f"({_hit(r, m, worst, counts[worst])}, {pt(drop)})"
            )
            moved = [t for t in r.transitions(DIGITS_BASE, m) if t[0] == worst]
            if moved:
                text += f"; where the base read {worst} it now reads " + ", ".join(
                    f"{b} ({n}×)" for _a, b, n in moved[:2]
                )
        lines.append(text + ".")
    for m in ("layer-0.4", "layer-0.5"):
        if r.has(m):
            lines.append(
                f"- **{m}**, the same pruning without recalibration: {pct(r.metric(m, 'accuracy'))}; its "
                f"largest transitions are {_off_diagonal(r.transitions(DIGITS_BASE, m), 2)}."
            )
    for m in ("layer-0.4-kd", "layer-0.5-kd"):
        if r.has(m):
            acc = r.metric(m, "accuracy")
            lines.append(
                f"- **{m}**, the same masks distilled from the base: {pct(acc)} ({pt(acc - base_acc)}), "
                f"{_changed(r, m)}."
            )
    for m, what in (
        ("int8", "int8 weights"),
        ("global-0.9-ft", "global pruning at 90 % and a short fine-tune"),
    ):
        if r.has(m):
            acc = r.metric(m, "accuracy")
            lines.append(
                f"- **{m}**, {what}: {pct(acc)} ({pt(acc - base_acc)}), stored "
                f"{r.metric(m, 'compression_ratio'):.1f}× smaller than the base."
            )
    return "\n".join(lines) + "\n"


@section("digits-base", sample="digits")
def digits_base(r: Results) -> str:
    counts = r.class_counts(DIGITS_BASE)
    acc = r.metric(DIGITS_BASE, "accuracy")
    size = r.metric(DIGITS_BASE, "stored_size")
    params = r.metric(DIGITS_BASE, "parameters")
    torch, python = r.version(DIGITS_BASE, "torch"), r.version(DIGITS_BASE, "python")
    return (
        f"The base model ({params:,.0f} parameters, {size / 1024:.1f} KiB stored) reaches "
        f"**{pct(acc)}** on the {sum(counts.values())} held-out images (this run: torch {torch}, "
        f"Python {python}; other versions can move individual instances).\n"
    )


# -- minilm ---------------------------------------------------------------------------------------

MINILM_BASE = "all-MiniLM-L6-v2"


def _agreement(r: Results, model: str) -> str:
    if not r.has(model):
        return "not run"
    return (
        f"{r.metric(model, 'cosine_agreement'):.3f} (min {r.metric(model, 'cosine_agreement_min'):.3f}, "
        f"NN@5 {r.metric(model, 'neighbour_overlap@5'):.0f} %)"
    )


@section("minilm-layernorm", sample="minilm")
def minilm_layernorm(r: Results) -> str:
    rows = [
        "| sparsity | layer-all (LayerNorm pruned) | layer-all + restore LayerNorm | layer-nonorm | global-all |",
        "|---|---|---|---|---|",
    ]
    for s in ("0.1", "0.2", "0.3"):
        cells = [_agreement(r, f"{v}-{s}") for v in ("layer-all", "layer-all", "layer-nonorm", "global-all")]
        cells[1] = _agreement(r, f"layer-all-{s}-restore-ln")
        rows.append(f"| {float(s) * 100:.0f} % | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _cos(r: Results, model: str) -> str:
    return f"{r.metric(model, 'cosine_agreement'):.3f}"


@section("minilm-findings", sample="minilm")
def minilm_findings(r: Results) -> str:
    lines = [
        f"- **The failure.** `layer-all-0.1`: mean cosine {_cos(r, 'layer-all-0.1')} at only 10 % "
        f"sparsity (lowest sentence {r.metric('layer-all-0.1', 'cosine_agreement_min'):.3f}).",
        f"- **Global pruning is fine.** `global-all-0.1`: {_cos(r, 'global-all-0.1')}.",
        f"- **The fixes.** Excluding the norms (`layer-nonorm-0.1`: {_cos(r, 'layer-nonorm-0.1')}) or "
        f"restoring them (`layer-all-0.1-restore-ln`: {_cos(r, 'layer-all-0.1-restore-ln')})"
        + (
            ", which are the same model (one fingerprint, one stored model)."
            if r.model_id("layer-nonorm-0.1") == r.model_id("layer-all-0.1-restore-ln")
            else "."
        ),
    ]
    kd = [s for s in ("0.1", "0.3") if r.has(f"layer-all-{s}-kd")]
    if kd:
        lines.append(
            "- **Distillation is not the fix.** "
            + "; ".join(
                f"{float(s) * 100:.0f} %: {_cos(r, f'layer-all-{s}')} → {_cos(r, f'layer-all-{s}-kd')} "
                f"(restored: {_cos(r, f'layer-all-{s}-restore-ln')})"
                for s in kd
            )
            + "."
        )
    return "\n".join(lines) + "\n"


# -- charlm ---------------------------------------------------------------------------------------

CHARLM_BASE = "charlm"
#: The quantized models of charlm's table, in its order.
CHARLM_QUANTIZED = (
    *(f"rtn-{g}-{b}" for b in (8, 6, 4, 3) for g in ("tensor", "channel", "group")),
    *(f"calibrated-{g}-{b}" for b in (4, 3) for g in ("channel", "group")),
)


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _lm_row(r: Results, m: str, label: str | None = None) -> str:
    return (
        f"| {label or m} | {kib(r.metric(m, 'stored_size'))} | {r.metric(m, 'perplexity'):.3f} | "
        f"{pct(r.metric(m, 'token_agreement'))} | {pct(r.metric(m, 'generation_match'))} | "
        f"{r.metric(m, 'generation_first_divergence'):.1f} |"
    )


@section("charlm-base", sample="charlm")
def charlm_base(r: Results) -> str:
    return (
        f"The base model reaches perplexity **{r.metric(CHARLM_BASE, 'perplexity'):.2f}** "
        f"({r.metric(CHARLM_BASE, 'nll'):.2f} nats/char) on the held-out text, stored in "
        f"{kib(r.metric(CHARLM_BASE, 'stored_size'))} (this run: torch {r.version(CHARLM_BASE, 'torch')}).\n"
    )


@section("charlm-quant", sample="charlm")
def charlm_quant(r: Results) -> str:
    rows = [
        "| variant | stored | perplexity | next-token agreement | generation match | first divergence (tokens) |",
        "|---|---|---|---|---|---|",
        _lm_row(r, CHARLM_BASE, f"{CHARLM_BASE} (float32)"),
    ]
    rows += [_lm_row(r, m) for m in CHARLM_QUANTIZED if r.has(m)]
    return "\n".join(rows) + "\n"


def _span(values: list[float], fmt: str) -> str:
    """`lo–hi`, or one number when both read the same."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def _ppl_change(r: Results, m: str) -> str:
    change = 100 * (r.metric(m, "perplexity") / r.metric(CHARLM_BASE, "perplexity") - 1)
    return f"{'+' if change >= 0 else '−'}{abs(change):.1f} %"


@section("charlm-findings", sample="charlm")
def charlm_findings(r: Results) -> str:
    p = lambda m: f"{r.metric(m, 'perplexity'):.3f}"  # noqa: E731
    agree = lambda m: pct(r.metric(m, "token_agreement"))  # noqa: E731
    eights = [f"rtn-{g}-8" for g in ("tensor", "channel", "group")]
    lines = [
        f"- **8 bits**: next-token agreement {_span([r.metric(m, 'token_agreement') for m in eights], '{:.1f}')} % "
        f"over the three granularities, perplexity {_span([r.metric(m, 'perplexity') for m in eights], '{:.3f}')} "
        f"(base {p(CHARLM_BASE)}).",
        f"- **rtn-tensor-3**, one scale per tensor at 3 bits: perplexity {p('rtn-tensor-3')} "
        f"({_ppl_change(r, 'rtn-tensor-3')}), agreement {agree('rtn-tensor-3')}, generations part from "
        f"the base after {r.metric('rtn-tensor-3', 'generation_first_divergence'):.1f} characters on average.",
        f"- **Finer scales** at 3 bits: per channel {p('rtn-channel-3')}, per group {p('rtn-group-3')}.",
    ]
    if r.has("calibrated-group-3"):
        m = "calibrated-group-3"
        ratio = r.metric(CHARLM_BASE, "stored_size") / r.metric(m, "stored_size")
        lines.append(
            f"- **{m}** (GPTQ-style): perplexity {p(m)} ({_ppl_change(r, m)} against the base), agreement "
            f"{agree(m)}, {kib(r.metric(m, 'stored_size'))} ({ratio:.1f}× smaller than float32)."
        )
    if r.has("calibrated-channel-4") and r.has("rtn-group-4"):
        a, b = "calibrated-channel-4", "rtn-group-4"
        smaller = r.metric(a, "stored_size") < r.metric(b, "stored_size")
        lines.append(
            f"- **4 bits**: {a} {agree(a)} agreement, perplexity {p(a)}, against {b} {agree(b)}, {p(b)}; "
            f"{a} stores {'less' if smaller else 'more'} ({kib(r.metric(a, 'stored_size'))} vs "
            f"{kib(r.metric(b, 'stored_size'))})."
        )
    for g in ("group", "tensor"):
        kd, src = f"rtn-{g}-3-kd", f"rtn-{g}-3"
        if r.has(kd):
            lines.append(
                f"- **{kd}**, 100 steps of distillation on the 3-bit grid: perplexity {p(src)} → {p(kd)}, "
                f"agreement {agree(src)} → {agree(kd)}, generation match "
                f"{pct(r.metric(src, 'generation_match'))} → {pct(r.metric(kd, 'generation_match'))}."
            )
    pruned = [m for m in ("prune-0.3", "prune-0.5", "prune-0.7", "prune-0.5-ft") if r.has(m)]
    if pruned:
        lines.append(
            "- **Pruning**, for contrast (global magnitude): "
            + "; ".join(f"{m} {p(m)} / {agree(m)} at {kib(r.metric(m, 'stored_size'))}" for m in pruned)
            + " (perplexity / agreement / stored)."
        )
    return "\n".join(lines) + "\n"


# -- deploy: eager vs ONNX Runtime vs ExecuTorch (issue 21 item 5) ----------------------------------

#: The models each sample's deploy table quotes (base, int8, 4-bit, 50% unstructured, 2:4), as
#: (name in the store, what it is).
DEPLOY_MODELS: dict[str, tuple[tuple[str, str], ...]] = {
    "digits": (
        ("digits-cnn", "float32 base"),
        ("int8", "int8 weights"),
        ("int4", "4-bit weights"),
        ("sparse-0.5", "50% unstructured"),
        ("sparse-2of4", "2:4 semi-structured"),
    ),
    "charlm": (
        ("charlm", "float32 base"),
        ("deploy-int8", "int8 weights"),
        ("deploy-int4", "4-bit weights (groups of 64)"),
        ("deploy-sparse-0.5", "50% unstructured"),
        ("deploy-2of4", "2:4 semi-structured"),
    ),
}
_RUNTIMES = (("onnxruntime", "ONNX Runtime"), ("executorch", "ExecuTorch"))


def _maybe(r: Results, model: str, name: str) -> float:
    """A metric, or NaN where the run did not measure it (a runtime missing, an export refused)."""
    try:
        return r.metric(model, name)
    except NumbersError:
        return float("nan")


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _ms(x: float) -> str:
    return "—" if x != x else f"{x:.3g} ms"


def _deploy_table(r: Results) -> str:
    base = DEPLOY_MODELS[r.sample][0][0]
    rows = [
        "| model | stored | eager PyTorch | ONNX Runtime | ExecuTorch | .onnx | .pte | parity (max abs diff) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, what in DEPLOY_MODELS[r.sample]:
        if not r.has(model):
            continue
        eager = _maybe(r, model, "latency")
        cells = []
        for t, _label in _RUNTIMES:
            lat, speed = _maybe(r, model, f"{t}_latency"), _maybe(r, model, f"{t}_speedup")
            cells.append(_ms(lat) + ("" if speed != speed else f" ({speed:.2g}×)"))
        sizes = [_maybe(r, model, f"{t}_size") for t, _ in _RUNTIMES]
        diffs = [_maybe(r, model, f"{t}_max_abs_diff") for t, _ in _RUNTIMES]
        parity = " / ".join("—" if d != d else f"{d:.1g}" for d in diffs)
        rows.append(
            f"| {model} ({what}) | {_kib(r.metric(model, 'stored_size'))} | {_ms(eager)} | {cells[0]} | "
            f"{cells[1]} | {'—' if sizes[0] != sizes[0] else _kib(sizes[0])} | "
            f"{'—' if sizes[1] != sizes[1] else _kib(sizes[1])} | {parity} |"
        )
    lines = ["\n".join(rows), ""]
    speedups = [(label, _maybe(r, base, f"{t}_speedup")) for t, label in _RUNTIMES] if r.has(base) else []
    said = [
        f"{x:.2g}× faster in {label}"
        if x >= 1.1
        else f"{1 / x:.2g}× slower in {label}"
        if x < 0.9
        else f"as fast in {label}"
        for label, x in speedups
        if x == x and x > 0
    ]
    if said:
        lines.append(f"Against eager PyTorch the base runs {' and '.join(said)}.")
    faster: list[str] = []
    for t, label in _RUNTIMES:
        b = _maybe(r, base, f"{t}_latency") if r.has(base) else float("nan")
        ratios = []
        for model, what in DEPLOY_MODELS[r.sample][1:]:
            m = _maybe(r, model, f"{t}_latency") if r.has(model) else float("nan")
            if m == m and b == b and b > 0:
                ratio = m / b
                verdict = "faster" if ratio < 0.9 else ("slower" if ratio > 1.1 else "no faster")
                ratios.append(f"{what} {verdict} ({ratio:.2f}× the base's time)")
                if ratio < 0.9:
                    faster.append(f"{what} in {label}")
        if ratios:
            lines.append(f"In {label}: " + "; ".join(ratios) + ".")
    lines.append(
        "Faster than the base in the same runtime: " + ", ".join(faster) + "."
        if faster
        else "No compression here runs faster than the base in the same runtime."
    )
    lines.append(
        "Latencies: one thread, batch 8, the lowest of the round medians, each runtime timed in the "
        "same rounds as eager PyTorch (× is the speed-up over eager in those rounds). These runtimes' "
        "CPU kernels are dense, so zeros are still multiplied; integer weights shrink the .onnx file, "
        "not the time: ONNX Runtime dequantizes them as it loads the file (its integer QDQ kernels, "
        "which would also quantize the activations, are off); the .pte holds float weights."
    )
    return "\n".join(lines) + "\n"


@section("digits-deploy", sample="digits")
def digits_deploy(r: Results) -> str:
    return _deploy_table(r)


@section("charlm-deploy", sample="charlm")
def charlm_deploy(r: Results) -> str:
    return _deploy_table(r)


# -- reading and writing READMEs ------------------------------------------------------------------


def render(text: str, results: Results, *, where: str = "README.md") -> str:
    """`text` with each generated section of `results.sample` rewritten. A registered section
    without its markers, or markers without a registered section, is an error."""
    wanted = {s.name: s for s in sections_of(results.sample)}
    found: set[str] = set()

    def replace(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in wanted:
            raise NumbersError(f"{where}: no section '{name}' is registered in scripts/sample_numbers.py")
        found.add(name)
        return m["open"] + wanted[name].fn(results) + m["close"]

    out = MARKERS.sub(replace, text)
    missing = sorted(set(wanted) - found)
    if missing:
        raise NumbersError(f"{where} has no markers for {', '.join(missing)}")
    return out


def generated(text: str) -> dict[str, str]:
    """The generated sections of a README as they stand: name -> body."""
    return {m["name"]: m["body"] for m in MARKERS.finditer(text)}


def samples_with_sections() -> list[str]:
    return sorted({s.sample for s in SECTIONS.values()})


def refresh(sample: str, workspace: Path | None, *, check: bool) -> list[str]:
    """Bring one sample's numbers.json and README up to date (or, with check, say what is not).

    The store is read when `workspace` has one (default: the sample's folder); otherwise the
    README is rendered from the committed numbers.json. Returns the problems found by check."""
    folder = SAMPLES / sample
    readme = folder / "README.md"
    facts_path = folder / FACTS_FILE
    committed = json.loads(facts_path.read_text(encoding="utf-8")) if facts_path.is_file() else None
    ws = workspace if workspace is not None else folder
    problems: list[str] = []
    if (ws / ".bonsai" / "lineage.sqlite").is_file():
        results = Results.from_store(sample, ws)
    elif committed is not None:
        results = Results.from_facts(sample, committed)
    else:
        raise NumbersError(f"samples/{sample} has neither stored results nor {FACTS_FILE}; run the sample")
    text = readme.read_text(encoding="utf-8")
    new = render(text, results, where=f"samples/{sample}/README.md")
    facts_text = json.dumps(results.facts, indent=1, sort_keys=True) + "\n"
    if check:
        if new != text:
            problems.append(f"samples/{sample}/README.md: its generated sections are out of date")
        if committed is None or facts_text != facts_path.read_text(encoding="utf-8"):
            problems.append(f"samples/{sample}/{FACTS_FILE} differs from the stored results")
        return problems
    if new != text:
        readme.write_text(new, encoding="utf-8")
    if committed is None or facts_text != facts_path.read_text(encoding="utf-8"):
        facts_path.write_text(facts_text, encoding="utf-8")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only", nargs="+", metavar="SAMPLE", help="these samples (one without sections is skipped)"
    )
    ap.add_argument("--workspace", type=Path, help="read the stored results here (with one --only sample)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    args = ap.parse_args(argv)
    samples = [s for s in args.only if sections_of(s)] if args.only else samples_with_sections()
    if args.workspace is not None and len(samples) != 1:
        ap.error("--workspace needs exactly one sample in --only")
    problems: list[str] = []
    for sample in samples:
        try:
            problems += refresh(sample, args.workspace, check=args.check)
        except NumbersError as e:
            problems.append(f"{sample}: {e}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
