"""Shared helpers for the language-server tests: a real `bonsai serve` subprocess over stdio."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER_CMD = [sys.executable, "-c", "import sys; from modelbonsai.lsp.server import main; sys.exit(main())"]
SERVER_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def server_config() -> ClientServerConfig:
    return ClientServerConfig(server_command=SERVER_CMD, server_env=SERVER_ENV)


async def start_session(
    client: LanguageClient,
    folder: Path,
    storage: Path,
    *,
    trusted: bool = True,
    encodings: list[str] | None = None,
    **options: Any,
) -> lsp.InitializeResult:
    """Initialize as VS Code does; `encodings`: the position encodings the client offers (VS Code
    offers none: UTF-16)."""
    caps = client_capabilities("visual-studio-code")
    if encodings is not None:
        caps.general = lsp.GeneralClientCapabilities(
            position_encodings=[lsp.PositionEncodingKind(e) for e in encodings]
        )
    params = lsp.InitializeParams(
        capabilities=caps,
        root_uri=folder.as_uri(),
        workspace_folders=[lsp.WorkspaceFolder(uri=folder.as_uri(), name=folder.name)],
        initialization_options={"storagePath": str(storage), "device": "cpu", "trusted": trusted, **options},
    )
    return await client.initialize_session(params)


async def request(client: LanguageClient, method: str, params: Any) -> Any:
    return await client.protocol.send_request_async(method, params)


def collect(client: LanguageClient, method: str) -> list[Any]:
    """Record every notification `method` the server sends, in order."""
    seen: list[Any] = []

    @client.feature(method)
    def _on(params: Any) -> None:
        seen.append(params)

    return seen


async def until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def watch(client: LanguageClient) -> None:
    """Plain JSON results (`plain_json`), and record what a job-running test looks at:
    `client.job_changes`, `client.lineage_changes` and `client.lens_refreshes` (the lens refresh
    requests need a handler anyway, or the server's request to the client fails)."""
    from modelbonsai.lsp.protocol import JOB_CHANGED, LINEAGE_CHANGED

    plain_json(client)
    client.job_changes = collect(client, JOB_CHANGED)  # type: ignore[attr-defined]
    client.lineage_changes = collect(client, LINEAGE_CHANGED)  # type: ignore[attr-defined]
    client.lens_refreshes = collect(client, lsp.WORKSPACE_CODE_LENS_REFRESH)  # type: ignore[attr-defined]


async def job_end(client: LanguageClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The job's final state, from the `bonsai/jobChanged` notifications the test recorded in
    `client.job_changes` (with `collect`)."""
    from modelbonsai.lsp.protocol import JOB_FINAL_STATES

    changes: list[Any] = client.job_changes  # type: ignore[attr-defined]
    return await until(
        lambda: next(
            (
                c["job"]
                for c in reversed(changes)
                if c["job"]["id"] == job_id and c["job"]["state"] in JOB_FINAL_STATES
            ),
            None,
        ),
        timeout,
        f"job {job_id} to end",
    )


async def run_job(
    client: LanguageClient, file: Path, variants: list[str], timeout: float = 120.0
) -> dict[str, Any]:
    """Start `bonsai/run` of `variants` of `file` and wait for the job's final state."""
    from modelbonsai.lsp import protocol as P

    job_id = (await request(client, P.RUN, {"file": str(file), "variants": variants}))["jobId"]
    return await job_end(client, job_id, timeout)


def plain_json(client: LanguageClient) -> None:
    """Make the test client hand over custom results and notifications as the JSON they were
    (pygls' default turns them into namedtuples, renaming keys such as '0.weight')."""
    from pygls.protocol import JsonRPCNotification, JsonRPCResponseMessage

    conv = client.protocol._converter
    conv.register_structure_hook(JsonRPCResponseMessage, lambda obj, cls: cls(**{"result": None, **obj}))
    conv.register_structure_hook(JsonRPCNotification, lambda obj, cls: cls(**{"params": None, **obj}))
