"""`bonsai ops`: the registered compression ops."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ops", parents=[common], help="list the registered compression ops")
    p.set_defaults(handler=cmd_ops)


def cmd_ops(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..ops.registry import all_ops

    table = Table()
    for col in ("op", "family", "parameters", "summary"):
        table.add_column(col)
    for op in all_ops():
        table.add_row(op.name, op.family, ", ".join(p.name for p in op.params), op.summary)
    Console(width=max(120, Console().width)).print(table)
    return EXIT_OK
