"""What every command shares: exit codes, messages on stderr, the store it opens, how numbers and
models read in a table, and a stored model rebuilt to run."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# UserError: the CLI's own "a mistake the user can fix" (printed as one line, exit code 2)
from ..errors import BonsaiError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _NoTraceback(logging.Formatter):
    """A log record as one line: a logged exception's traceback only under BONSAI_DEBUG (the
    message already says what failed; a user who reports it can set the variable)."""

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei) if debug() else ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # formatted per handler: another may want the traceback
        return super().format(record).rstrip("\n")


def plain_logging() -> None:
    """Warnings and errors logged by the engine reach stderr as `bonsai: message` (without a
    handler Python's last resort prints them with their tracebacks)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NoTraceback("bonsai: %(message)s"))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)


def is_user_error(e: BaseException) -> bool:
    # By class (errors.py): every error the user can fix is a BonsaiError that says so.
    return isinstance(e, BonsaiError) and e.user


def debug() -> bool:
    return os.environ.get("BONSAI_DEBUG", "") not in ("", "0")


def err(message: str) -> None:
    print(f"bonsai: {message}", file=sys.stderr)


def workspace(args: argparse.Namespace, file: Path | None = None) -> Path:
    ws = getattr(args, "workspace", None)
    if ws:
        path = Path(ws).expanduser()
        if not path.is_dir():
            raise UserError(f"--workspace {ws}: no such folder")
        return path.resolve()
    if file is not None:
        return file.resolve().parent
    return Path.cwd()


def open_store(args: argparse.Namespace, file: Path | None = None) -> Any:
    from ..store import LineageStore

    return LineageStore.open(workspace(args, file))


def format_value(value: float, unit: str) -> str:
    if unit == "B":
        v = float(value)
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(v) < 1024 or u == "GiB":
                return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
            v /= 1024
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.1f}%"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}" + (f" {unit}" if unit else "")
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def model_label(name: str, aliases: list[str]) -> str:
    """A model's name in a table, with the other variants that are this same model (their recipe
    matched): `int8 (= twin)`. Intermediate steps' names (`twin/1`) are left to `bonsai show`, and
    more than two variants are counted, so the name column does not crowd out the metrics."""
    finals = [a for a in aliases if "/" not in a]
    if not finals:
        return name
    shown = ", ".join(finals[:2]) + (f", +{len(finals) - 2}" if len(finals) > 2 else "")
    return f"{name} (= {shown})"


def print_models(store: Any, models: list[Any], *, title: str = "", failed: Sequence[Any] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = store.all_metrics()
    names = {m.id: m.name for m in store.list_models()}
    columns: list[str] = []
    for m in models:
        for x in metrics.get(m.id, []):
            if x.headline and x.name not in columns:
                columns.append(x.name)
    table = Table(title=title or None)
    for col in ("id", "model", "parent", "op", "status", *columns):
        table.add_column(col, no_wrap=col in ("id", "model"))
    for m in models:
        by_name = {x.name: x for x in metrics.get(m.id, [])}
        row = [
            m.id,
            model_label(m.name, getattr(m, "aliases", None) or []),
            names.get(m.parent_id or "", "") if m.parent_id else "",
            m.op or "(base)",
            ("imported" if m.imported else m.status) if m.status == "ok" else f"[red]{m.status}",
        ]
        for col in columns:
            x = by_name.get(col)
            # ~: a noisy measurement (its rounds disagreed; `bonsai measure` measures it again)
            row.append(("~" if x.noisy else "") + format_value(x.value, x.unit) if x else "")
        table.add_row(*row)
    for f in failed:  # no model was stored: no id, no metrics
        table.add_row("", f.variant, f.parent or "", f.op or "", "[red]failed", *[""] * len(columns))
    Console(width=max(120, Console().width)).print(table)
    for m in models:
        if m.status != "ok":
            err(f"{m.name} ({m.id}) is broken: {m.status_reason}")
    for f in failed:
        err(f"{f.variant} failed in its latest run ({f.experiment_file}): {f.message}")
