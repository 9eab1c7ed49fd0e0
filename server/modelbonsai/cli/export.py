"""`bonsai export MODEL DIR`: a stored model written where other tools load it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, UserError, load_model, open_store


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    exp = sub.add_parser(
        "export", parents=[common], help="write a model as a Hugging Face folder or safetensors"
    )
    exp.add_argument("model", metavar="MODEL")
    exp.add_argument("dir", metavar="DIR")
    exp.add_argument("--format", choices=["hf", "safetensors"], default="hf")
    exp.add_argument(
        "--force",
        action="store_true",
        help="export into a folder that holds files: replaces its weight files (and, as hf, its "
        "configs), keeps the others (tokenizer, README)",
    )
    exp.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..artifacts import export_conflict, export_model

    with open_store(args) as store:
        m = store.get_model(args.model)
        if m.status != "ok":
            raise UserError(f"model '{m.name}' is broken: {m.status_reason}")
        # Refused before the model is rebuilt: the answer comes at once, and nothing is written.
        conflict = None if args.force else export_conflict(Path(args.dir), args.format)
        if conflict is not None:
            raise UserError(f"{conflict}; add --force to export there anyway")
        cm = load_model(store, m)
        written = export_model(cm, Path(args.dir), format=args.format, force=args.force)
        print(f"exported {m.name} ({m.id}) to {written} ({args.format})", file=sys.stderr)
    return EXIT_OK
