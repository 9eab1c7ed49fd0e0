"""`bonsai compare BASE OTHER...`: weights and behaviour against a base."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, UserError, open_store


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    cmp_ = sub.add_parser("compare", parents=[common], help="compare models with a base model")
    cmp_.add_argument("models", nargs="+", metavar="MODEL", help="the base model first, then the others")
    cmp_.add_argument("--json", action="store_true")
    cmp_.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """Weights (whole-model roll-up) and behaviour (stored evaluation outputs) against a base,
    through the service's comparison jobs: what the editor compared before (or compares next) is
    read from the store's result cache."""
    from .. import wire
    from ..service import CompareBehaviorJob, CompareWeightsJob, QuietReporter, handle

    if len(args.models) < 2:
        raise UserError("compare needs a base model and at least one other: bonsai compare BASE OTHER...")
    with open_store(args) as store:
        models = [store.get_model(name) for name in args.models]
        for m in models:
            if m.status != "ok":
                raise UserError(f"model '{m.name}' is broken: {m.status_reason}")
        base, others = models[0], models[1:]
        # Behaviour needs stored evaluation outputs on both sides, and torch to read them: a
        # comparison of models without them (weights only) never imports torch.
        with_outputs = [m for m in others if _has_outputs(store, m)] if _has_outputs(store, base) else []
        folder = str(store.workspace)
    weights = QuietReporter()
    handle(CompareWeightsJob(folder=folder, base=base.id, models=tuple(m.id for m in others)), weights)
    behavior: dict[str, Any] = {}
    if with_outputs:
        pages = QuietReporter()
        handle(
            CompareBehaviorJob(folder=folder, base=base.id, models=tuple(m.id for m in with_outputs)), pages
        )
        behavior = {
            m.id: wire.decode_result(p).meta["summary"]
            for m, p in zip(with_outputs, pages.pages, strict=True)
        }
    out: dict[str, Any] = {}
    for m, page in zip(others, weights.pages, strict=True):
        meta = wire.decode_result(page).meta  # one page per compared model, in order
        tensors = meta["tensors"]
        out[m.name] = {
            "id": m.id,
            "weights": next((n for n in meta["tree"] if n["parent"] is None), None),
            "behavior": behavior.get(m.id),
            # lowrank: tensors compared as the product of their factors (name -> rank)
            "factorised": {t["name"]: t["factorised"] for t in tensors if "factorised" in t},
            # what the roll-up does not cover (never called identical while any is listed)
            "not_compared": [
                {"name": t["name"], "status": t["status"], "message": t.get("message", "")}
                for t in tensors
                if "metrics" not in t
            ],
        }
    if args.json:
        print(json.dumps({"base": {"name": base.name, "id": base.id}, "others": out}, indent=2, default=str))
        return EXIT_OK
    _print_comparison(base.name, out)
    return EXIT_OK


#: the per-instance evaluation outputs beside a model's artifact (runner.OUTPUTS_FILE, named here
#: so that looking for them does not import the runner, and torch with it)
OUTPUTS_FILE = "outputs.safetensors"


def _has_outputs(store: Any, m: Any) -> bool:
    return bool((store.artifact_path(m) / OUTPUTS_FILE).is_file())


def _print_comparison(base: str, out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"compared with {base}")
    for col in ("model", "rel. L2", "SQNR dB", "cosine", "sparsity", "agreement", "mean KL", "accuracy Δ"):
        table.add_column(col)

    def num(v: Any, fmt: str = "{:.4g}") -> str:
        return "" if v is None else fmt.format(v)

    for name, r in out.items():
        w = (r["weights"] or {}).get("metrics", {})
        b = r["behavior"] or {}
        agree = b.get("agreement", {})
        delta = b.get("accuracy_delta", {})
        table.add_row(
            name,
            num(w.get("rel_l2")),
            "identical" if w.get("identical") else num(w.get("sqnr_db"), "{:.1f}"),
            num(w.get("cosine"), "{:.5f}"),
            num(w.get("sparsity_other"), "{:.1%}"),
            num(agree.get("value") if isinstance(agree, dict) else agree, "{:.1%}"),
            num(b.get("mean_kl")),
            num(delta.get("value") if isinstance(delta, dict) else None, "{:+.1%}"),
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    for name, r in out.items():
        factorised = r.get("factorised") or {}
        if factorised:
            ranks = ", ".join(str(k) for k in sorted(set(factorised.values())))
            console.print(
                f"{name}: {len(factorised)} tensor(s) factorised (rank {ranks}), compared as the product "
                f"of their factors: {', '.join(factorised)}",
                highlight=False,
                soft_wrap=True,
            )
        missed = r.get("not_compared") or []
        if missed:
            console.print(
                f"{name}: {len(missed)} tensor(s) not compared (not in the figures above): "
                + "; ".join(f"{t['name']} ({t['message'] or t['status']})" for t in missed),
                highlight=False,
                soft_wrap=True,
            )
