"""`bonsai report`: the lineage and its metrics as Markdown, or (`--html`) as one self-contained page
with the Model Map, the table with filters, recipes, and chosen comparisons."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, UserError, format_value, open_store


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    rep = sub.add_parser(
        "report",
        parents=[common],
        help="a report of the lineage: Markdown, or --html for one self-contained page to share",
    )
    rep.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    rep.add_argument(
        "--html",
        action="store_true",
        help="one self-contained HTML file (Model Map, table with filters, recipes); needs -o FILE",
    )
    rep.add_argument(
        "--compare",
        nargs="+",
        metavar="MODEL",
        help="with --html: a base model, then the models whose behaviour and layers to show against it",
    )
    rep.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """The lineage as Markdown: every model, its parent and op, and its metrics."""
    if args.html or args.compare:
        return _html_report(args)
    with open_store(args) as store:
        models = store.list_models()
        metrics = store.all_metrics()
        names = {m.id: m.name for m in models}
        cols: list[str] = []
        for m in models:
            for x in metrics.get(m.id, []):
                if x.name not in cols:
                    cols.append(x.name)
        lines = [
            f"# Bonsai report: {store.workspace.name}",
            "",
            f"{len(models)} model(s) in `{store.root}`.",
            "",
            "| model | parent | op | params | status | " + " | ".join(cols) + " |",
            "|" + "---|" * (5 + len(cols)),
        ]
        for m in models:
            by = {x.name: x for x in metrics.get(m.id, [])}
            cells = [
                m.name,
                names.get(m.parent_id or "", ""),
                m.op or "(base)",
                json.dumps(m.params, sort_keys=True) if m.params else "",
                m.status,
            ]
            cells += [format_value(by[c].value, by[c].unit) if c in by else "" for c in cols]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        text = "\n".join(lines) + "\n"
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return EXIT_OK


def _html_report(args: argparse.Namespace) -> int:
    from ..share.report_html import write_report

    if not args.html:
        raise UserError(
            "--compare goes with --html: bonsai report --html -o report.html --compare BASE OTHER..."
        )
    if not args.output:
        raise UserError("--html writes a file: give it with -o report.html")
    with open_store(args) as store:
        out = write_report(
            store,
            Path(args.output),
            compare=args.compare or (),
            progress=lambda line: print(line, file=sys.stderr),
        )
    print(f"wrote {out} (self-contained: open it in any browser, offline)", file=sys.stderr)
    return EXIT_OK
