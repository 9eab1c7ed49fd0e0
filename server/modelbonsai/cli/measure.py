"""`bonsai measure MODEL...`: latency measured again, each model with its base in turn."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_OK, workspace


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    meas = sub.add_parser(
        "measure",
        parents=[common],
        help="measure the latency of models again, each with its base in turn (the ratio stays fair)",
    )
    meas.add_argument(
        "models", nargs="+", metavar="MODEL", help="model names or ids (their bases are measured too)"
    )
    meas.add_argument(
        "--device", metavar="auto|cpu|cuda|mps", default="auto", help="where to measure (default: auto)"
    )
    meas.add_argument("--json", action="store_true", help="machine-readable output")
    meas.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pytorch_model.bin (weights_only) when there are no safetensors",
    )
    meas.set_defaults(handler=cmd_measure)


def cmd_measure(args: argparse.Namespace) -> int:
    """Latency of the given models and their bases, measured in turn; each joins its model's
    history, and the stored figure is the most trustworthy of that history."""
    from ..service import MeasureJob, QuietReporter, handle

    class Progress(QuietReporter):
        def progress(self, fraction: float | None, message: str | None = None) -> None:
            print(f"{100 * (fraction or 0.0):3.0f}%  {message or ''}", file=sys.stderr)

    job = MeasureJob(
        folder=str(workspace(args)),
        models=tuple(args.models),
        device=args.device,
        allow_pickle=args.allow_pickle,
    )
    results = handle(job, Progress())  # the language server's measure job, here in process
    base_of = {r.model.id: r for r in results if r.model.id == r.base}
    rows: list[dict[str, Any]] = []
    for r in results:
        lat, shown = r.latency, r.shown
        base = base_of.get(r.base)
        rows.append(
            {
                "id": r.model.id,
                "name": r.model.name,
                "base": r.base,
                "measured": {
                    "value": lat.value_s * 1000,
                    "spread": lat.spread_s * 1000,
                    "noisy": lat.noisy,
                    "rounds": len(lat.rounds_s),
                    "calls": lat.calls,
                    "batchSize": lat.batch_size,
                    "device": lat.device,
                    "method": lat.method,
                    "load": lat.load,
                },
                "stored": None
                if shown is None
                else {
                    "value": shown.value,
                    "spread": shown.spread,
                    "noisy": shown.noisy,
                    "detail": shown.detail,
                },
                "ratioToBase": None
                if base is None or base.latency.value_s <= 0
                else lat.value_s / base.latency.value_s,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        m, s = row["measured"], row["stored"]
        line = (
            f"{row['name']:<{width}}  {_latency_text(m['value'], m['spread'], m['noisy'])} "
            f"({m['rounds']} rounds, batch {m['batchSize']}, {m['device']})"
        )
        if row["ratioToBase"] is not None and row["id"] != row["base"]:
            line += f"  {row['ratioToBase']:.2f}x the base"
        if s is not None and abs(s["value"] - m["value"]) > 1e-9:
            line += f"  stored: {_latency_text(s['value'], s['spread'] or 0.0, s['noisy'])} (a more trustworthy one)"
        print(line)
    return EXIT_OK


def _latency_text(value: float, spread: float, noisy: bool) -> str:
    """`3.16 ms (spread 0.05)`: the spread is how far above the figure the rounds' medians reach
    (one-sided: interference only adds time); noisy ones start with `~` (the rounds disagreed
    too much to trust)."""
    return f"{'~' if noisy else ''}{value:.3g} ms (spread {spread:.2g})"
