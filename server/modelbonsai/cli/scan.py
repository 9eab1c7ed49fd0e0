"""`bonsai scan FILE`: the sensitivity scan of an experiment file's `scan:` section (each setting
applied to one layer at a time), printed per layer; with a budget, the best per-layer recipe under
it, written into the file as a variant with `--write`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, UserError, err, open_store

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.I)
_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "scan",
        parents=[common],
        help="which layers can I compress? measure each layer's sensitivity to the file's `scan:` settings",
    )
    p.add_argument("file", metavar="FILE", help="a *.bonsai.yaml experiment file with a `scan:` section")
    p.add_argument(
        "--device", metavar="auto|cpu|cuda|mps", help="where to run (default: the file's `device`)"
    )
    p.add_argument("--fidelity", choices=["proxy", "full", "both"], help="override the file's `fidelity`")
    p.add_argument("--force", action="store_true", help="measure again even when this scan is stored")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--max-size", metavar="SIZE", help="a recipe whose scanned weights store in SIZE (e.g. 300KiB)"
    )
    budget.add_argument(
        "--max-loss",
        type=float,
        metavar="X",
        help="the smallest recipe within X of the base (full scans: the headline metric's unit)",
    )
    p.add_argument("--name", metavar="NAME", help="the budgeted variant's name (default: budget-<budget>)")
    p.add_argument("--write", action="store_true", help="append the budgeted variant to FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_scan)


def parse_size(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise UserError(f"--max-size {text}: a size like 300KiB, 1.5MB or 20000 (bytes)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()])


def cmd_scan(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ..experiment import load_experiment
    from ..scan.budget import under_size, variant_yaml, within_loss
    from ..scan.experiment import scan_experiment

    file = Path(args.file)
    if not file.is_file():
        raise UserError(f"{file}: no such experiment file")
    parsed = load_experiment(file)
    for problem in parsed.problems:
        r = problem.range
        print(
            f"{problem.path}:{r.start_line + 1}:{r.start_col + 1}: {problem.severity}: {problem.message}",
            file=sys.stderr,
        )
    if parsed.errors or parsed.experiment is None:
        err(f"{file}: {len(parsed.errors)} error(s); nothing was scanned")
        return EXIT_USAGE
    exp = parsed.experiment
    spec = getattr(exp, "scan", None)
    if spec is None:
        raise UserError(
            f"{file} has no `scan:` section: add one, e.g.\n"
            "scan:\n  settings:\n    - quantize.weights: {bits: 4, granularity: group, group_size: 32}\n"
            "    - prune.magnitude: {sparsity: 0.5}"
        )
    if args.fidelity:
        spec = dataclasses.replace(spec, fidelity=args.fidelity)
    if args.max_loss is not None and args.max_loss < 0:
        raise UserError("--max-loss is how much worse than the base a recipe may be: 0 or more")
    device = args.device or getattr(exp, "device", None) or "auto"
    with open_store(args, file) as store:

        def progress(fraction: float, message: str) -> None:
            print(f"{100 * fraction:3.0f}%  {message}", file=sys.stderr)

        result, reused = scan_experiment(exp, store, spec, device=device, force=args.force, progress=progress)
    if reused:
        err("scan read back from the store (the same base, settings and task); --force measures it again")
    recipe = None
    if args.max_size is not None:
        recipe = under_size(result, parse_size(args.max_size))
        label = f"budget-{args.max_size.replace(' ', '')}"
    elif args.max_loss is not None:
        recipe = within_loss(result, args.max_loss)
        label = f"within-{args.max_loss:g}"
    if args.json:
        out: dict[str, Any] = {"scan": result.to_json(), "reused": reused}
        if recipe is not None:
            out["recipe"] = recipe.to_json()
        print(json.dumps(out, indent=2))
    else:
        _print_scan(result)
    if recipe is None:
        return EXIT_OK
    if not recipe.feasible:
        err(f"{recipe.message}; the closest recipe is below")
    name = args.name or label
    text = variant_yaml(result, recipe, name)
    if not args.json:
        print(
            f"\nrecipe: {recipe.bytes:,} bytes of scanned weights (base {sum(result.base_bytes):,}), total "
            f"sensitivity {recipe.loss:.4g}{'' if recipe.exact else ' (costs grouped: near-optimal)'}\n{text}"
        )
    if args.write:
        if not recipe.feasible:
            raise UserError("no recipe meets the budget, so none was written: loosen the budget")
        from ..scan.write import append_variant

        append_variant(file, text)
        err(f"wrote variant {name} into {file}; run it with `bonsai run {file} --only {name}`")
    return EXIT_OK


def _print_scan(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sensitivity per {result.spec.granularity} ({result.spec.fidelity})")
    table.add_column("#", justify="right")
    table.add_column(result.spec.granularity)
    table.add_column("params", justify="right")
    for s in result.spec.settings:
        table.add_column(s.label, justify="right")
    for u, unit in enumerate(result.units):
        cells = [str(u), unit.name, f"{result.numel[u]:,}"]
        for s in range(len(result.spec.settings)):
            why = result.skipped.get(f"{s}:{u}")
            parts = []
            if result.proxy is not None and result.proxy[s][u] is not None:
                parts.append(f"{result.proxy[s][u]:.3g}")
            if result.full is not None and result.full[s][u] is not None:
                parts.append(f"Δ{result.full[s][u]:+.3g}")
            cells.append(" / ".join(parts) if parts else ("skipped" if why else "—"))
        table.add_row(*cells)
    console = Console(width=max(120, Console().width))
    console.print(table)
    if result.metric is not None:
        console.print(
            f"full: loss of {result.metric['name']} against the base's {result.metric['base']:.4g} "
            f"on {result.spec.max_instances} instances (Δ: base − model)",
            highlight=False,
        )
    for s, setting in enumerate(result.spec.settings):
        rho = result.rank_correlation(s)
        if rho is not None:
            console.print(f"{setting.label}: rank correlation of proxy and full {rho:.2f}", highlight=False)
    for key, why in result.skipped.items():
        s, u = (int(x) for x in key.split(":"))
        console.print(
            f"skipped {result.units[u].name} for {result.spec.settings[s].label}: {why}", highlight=False
        )
