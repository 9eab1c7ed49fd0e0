"""`bonsai ls`, `bonsai show MODEL`, `bonsai rm MODEL`: the lineage's models."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_OK, UserError, err, format_value, open_store, print_models


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    ls = sub.add_parser("ls", parents=[common], help="list the models in the lineage")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=cmd_ls)
    show = sub.add_parser("show", parents=[common], help="show one model: lineage, op, parameters, metrics")
    show.add_argument("model", metavar="MODEL", help="model name or id (prefix)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_show)
    rm = sub.add_parser("rm", parents=[common], help="delete a model (refused if it has children)")
    rm.add_argument("model", metavar="MODEL")
    rm.add_argument("--recursive", "-r", action="store_true", help="also delete every model derived from it")
    rm.set_defaults(handler=cmd_rm)


def cmd_ls(args: argparse.Namespace) -> int:
    from ..store.failures import failed_variants

    with open_store(args) as store:
        models = store.list_models()
        # A variant whose latest run failed is listed (as the editor's Lineage shows it) until a
        # run makes it: its failure is not only in the output of the run that met it.
        failed = failed_variants(store)
        if args.json:
            metrics = store.all_metrics()
            out = [{**m.to_json(), "metrics": [x.to_json() for x in metrics.get(m.id, [])]} for m in models]
            out += [_failed_json(f) for f in failed]
            print(json.dumps(out, indent=2))
            return EXIT_OK
        if not models and not failed:
            err(f"no models yet in {store.root}; run an experiment with `bonsai run FILE`")
            return EXIT_OK
        print_models(store, models, failed=failed)
    return EXIT_OK


def _failed_json(f: Any) -> dict[str, Any]:
    """A failed variant in `ls --json`: the keys of a model, no id (nothing was stored)."""
    return {
        "name": f.variant,
        "id": None,
        "parent_id": None,
        "parent": f.parent,
        "op": f.op,
        "params": {},
        "status": "failed",
        "status_reason": f.message,
        "experiment_file": f.experiment_file,
        "variant": f.variant,
        "created": f.finished or f.started,
        "metrics": [],
    }


def cmd_show(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        m = store.get_model(args.model)
        metrics = store.metrics(m.id)
        children = store.children(m.id)
        parent = store.get_model(m.parent_id) if m.parent_id and _exists(store, m.parent_id) else None
        if args.json:
            print(
                json.dumps(
                    {
                        **m.to_json(),
                        "metrics": [x.to_json() for x in metrics],
                        "children": [c.id for c in children],
                    },
                    indent=2,
                )
            )
            return EXIT_OK
        lines = [
            f"model      {m.name}  ({m.id})",
            *([f"also       {', '.join(m.aliases)}  (same fingerprint: one model)"] if m.aliases else []),
            f"status     {m.status}" + (f": {m.status_reason}" if m.status_reason else ""),
            f"parent     {parent.name + '  (' + parent.id + ')' if parent else '(none: a base model)'}",
        ]
        if m.op:
            lines.append(f"op         {m.op} {json.dumps(m.params, sort_keys=True)}")
        if m.imported:
            src = m.imported
            lines.append(
                f"imported   from {src.get('tool')} ({src.get('file')}, id {src.get('id')}): "
                "recipe and metrics, no weights"
            )
        if m.base_spec:
            lines.append(f"loaded     {json.dumps(m.base_spec, sort_keys=True)}")
        if m.experiment_file:
            where = m.experiment_file + (f"  variant {m.variant}, step {m.step + 1}" if m.variant else "")
            lines.append(f"from       {where}")
        lines += [
            f"seed       {m.seed}",
            f"versions   {', '.join(f'{k} {v}' for k, v in sorted(m.versions.items()))}",
            f"artifact   {store.artifact_path(m)}",
            f"created    {_when(m.created)}",
            f"children   {', '.join(c.name for c in children) or '(none)'}",
        ]
        print("\n".join(lines))
        if metrics:
            print("metrics")
            width = max(len(x.name) for x in metrics)
            for x in metrics:
                star = "*" if x.headline else " "
                spread = "" if x.spread is None else f" (spread {format_value(x.spread, x.unit)})"
                print(
                    f"  {star} {x.name:<{width}}  {'~' if x.noisy else ''}{format_value(x.value, x.unit)}{spread}"
                    + (f"   ({x.detail})" if x.detail else "")
                )
    return EXIT_OK


def _exists(store: Any, model_id: str) -> bool:
    try:
        store.get_model(model_id)
    except Exception:
        return False
    return True


def _when(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def cmd_rm(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        target = store.get_model(args.model)
        below = store.descendants(target.id)
        if below and not args.recursive:
            raise UserError(
                f"model '{target.name}' has {len(below)} derived model(s) ({', '.join(m.name for m in below[:5])}"
                f"{' …' if len(below) > 5 else ''}); use `bonsai rm {args.model} --recursive` to delete them too"
            )
        gone = store.delete_model(target.id, recursive=args.recursive)
        for m in gone:
            print(f"deleted {m.name} ({m.id})", file=sys.stderr)
    return EXIT_OK
