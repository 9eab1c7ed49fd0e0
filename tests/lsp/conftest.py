"""The language-server tests' default client: a `bonsai serve` over stdio, started in the module's
`folder` (each test module defines that fixture) with the recorders of `watch`. A module that needs
another start (other initialization options, a run first) defines its own `client`."""

from __future__ import annotations

from pathlib import Path

import pytest_lsp
from pytest_lsp import LanguageClient

from .helpers import server_config, start_session, watch


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage")
    yield
    await lsp_client.shutdown_session()
