"""Keep the folder a process was started in off `sys.path` (the language server's first step)."""

from __future__ import annotations

import os
import sys


def leave_start_folder_off_sys_path() -> None:
    """Drop the current folder from sys.path. `python -m` and `python -c` put it first, before the
    standard library: a language server started in a workspace would import the workspace's files
    named like the modules it imports later (yaml, numpy, torch, difflib, ... on the first
    diagnostics or hover), running them whether or not the workspace is trusted. Kept only when
    Bonsai itself is imported from there (a development checkout: the folder is Bonsai's source)."""
    here = os.path.realpath(os.getcwd())
    package_parent = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if package_parent == here:
        return
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != here]
