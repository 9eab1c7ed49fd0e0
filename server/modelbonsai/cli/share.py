"""`bonsai import-cc FILE`: a Compress and Compare lineage (its models.json) brought into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, open_store


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    imp = sub.add_parser(
        "import-cc",
        parents=[common],
        help="import a Compress and Compare lineage (models.json): models with their recipe and "
        "metrics, no weights",
    )
    imp.add_argument("file", metavar="FILE", help="the models.json of a Compress and Compare model server")
    imp.set_defaults(handler=cmd_import_cc)


def cmd_import_cc(args: argparse.Namespace) -> int:
    from ..share.cc_import import import_cc_lineage

    file = Path(args.file)
    with open_store(args) as store:
        result = import_cc_lineage(store, file)
        for rec in result.added:
            print(f"imported {rec.name} ({rec.id})", file=sys.stderr)
        n, old = len(result.added), len(result.already)
        print(
            f"{file}: {n} model{'s' if n != 1 else ''} imported into {store.root}"
            + (f", {old} already there" if old else "")
            + " (recipes and metrics; no weights, so weight and activation comparisons do not apply)",
            file=sys.stderr,
        )
    return EXIT_OK
