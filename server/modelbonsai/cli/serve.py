"""`bonsai serve`: the language server over stdio (started by the VS Code extension)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve", parents=[common], help="the language server over stdio (started by the VS Code extension)"
    )
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..startpath import leave_start_folder_off_sys_path

    leave_start_folder_off_sys_path()  # first: before anything imports what a workspace could shadow
    from ..lsp.server import main as serve_main

    return int(serve_main([]) or 0)
