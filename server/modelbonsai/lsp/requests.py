"""Model requests: run, compare, tiles, instances, delete, export, experiment/create."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import BonsaiServer


def register(server: BonsaiServer) -> None:
    pass
