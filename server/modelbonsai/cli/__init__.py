"""`bonsai`: the engine headless. Thin over the engine; all output formatting lives here.

One module per command (or per family of commands): each has `register(sub, common)`, which adds
its subparser and sets `handler`. A new command is a new module listed in `COMMAND_MODULES`.

Exit codes: 0 success, 1 a run failed (or an unexpected internal error), 2 a usage or user error
(bad experiment file, unknown model, refused delete). Messages go to stderr; a user's mistake
never shows a traceback (set BONSAI_DEBUG=1 to see one anyway).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from . import compare, export, measure, models, ops, report, run, scan, serve, share
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UserError,
    debug,
    err,
    format_value,
    is_user_error,
    model_label,
    plain_logging,
)
from .compare import OUTPUTS_FILE

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OUTPUTS_FILE",
    "UserError",
    "build_parser",
    "format_value",
    "is_user_error",
    "main",
    "model_label",
]

#: in the order `bonsai --help` lists their commands
COMMAND_MODULES = (run, models, export, ops, serve, compare, measure, report, share, scan)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        "-w",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="workspace folder holding .bonsai/ (default: the experiment file's folder, else cwd)",
    )
    p = argparse.ArgumentParser(
        prog="bonsai",
        parents=[common],
        description="Bonsai: compress models, record their lineage, compare them.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if args.version:
        from .. import __version__

        print(f"bonsai {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    from ..quiet import quiet_libraries

    quiet_libraries()  # before torch/transformers are imported: their chatter is not Bonsai's output
    if args.command != "serve":  # the server sets up its own log
        plain_logging()
    if args.command != "serve":  # the server's heavy work happens in its worker process, which does this
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # runs and comparisons free and allocate the same memory again: keep it
    try:
        return handler(args)
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # `bonsai ls | head`: the reader went away; not an error worth a message.
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if is_user_error(e):
            err(str(e))
            if debug():
                traceback.print_exc()
            return EXIT_USAGE
        err(f"internal error: {type(e).__name__}: {e}")
        if debug():
            traceback.print_exc()
        else:
            err("(set BONSAI_DEBUG=1 to see the traceback)")
        return EXIT_FAILED
