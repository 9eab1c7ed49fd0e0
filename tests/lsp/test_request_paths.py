"""A path parameter that cannot be a path (too long, a name too long, a NUL character) is
invalid params (-32602), not an internal error (issue 17 item 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import plain_json, request, server_config, start_session


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paths")


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    plain_json(lsp_client)
    await start_session(lsp_client, folder, folder / "storage", trusted=True)
    yield
    try:  # a server stalled on its stderr pipe (see below) would never answer shutdown
        await asyncio.wait_for(lsp_client.shutdown_session(), 30)
    except TimeoutError:
        pass


@pytest.mark.asyncio(loop_scope="module")
async def test_unusable_paths_are_invalid_params(client: LanguageClient, folder: Path) -> None:
    unusable = [
        "x" * 100_000,
        str(folder / ("n" * 300) / "a.bonsai.yaml"),
        str(folder / "a\x00b.bonsai.yaml"),
    ]
    for value in unusable:
        for method, params in [(P.RUN, {"file": value}), (P.EXPERIMENT_CREATE, {"configPath": value})]:
            with pytest.raises(JsonRpcException) as e:
                # bounded: a server that logs the whole value can stall on its stderr pipe
                await asyncio.wait_for(request(client, method, params), 30)
            assert e.value.code == P.INVALID_PARAMS, (method, e.value.message[:200])
            assert "is not a path" in e.value.message and len(e.value.message) < 300
    # An ordinary missing file is still "not found".
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RUN, {"file": str(folder / "missing.bonsai.yaml")})
    assert e.value.code == P.NOT_FOUND
