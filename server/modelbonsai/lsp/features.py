"""Language features for *.bonsai.yaml and Hugging Face config.json (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import BonsaiServer


def register(server: BonsaiServer) -> None:
    pass
