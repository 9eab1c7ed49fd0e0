"""initialize, lineage, jobs, bad input: the server answers every request and keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import plain_json, request, server_config, start_session


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("basics")


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    plain_json(lsp_client)
    lsp_client.init_result = await start_session(lsp_client, folder, folder / "storage", trusted=False)  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_initialize_and_empty_lineage(client: LanguageClient, folder: Path) -> None:
    init = client.init_result  # type: ignore[attr-defined]
    assert init.server_info.name == "bonsai"
    caps = init.capabilities
    assert caps.code_lens_provider is not None and caps.hover_provider and caps.definition_provider
    assert caps.completion_provider is not None
    result = await request(client, P.LINEAGE, {})
    P.check(result, P.LineageResult, "result")
    assert result == {"folder": str(folder.resolve()), "metrics": {}, "models": []}
    assert not (folder / ".bonsai").exists(), "looking at the lineage must not create a store"
    assert await request(client, P.JOBS, {}) == {"jobs": []}


@pytest.mark.asyncio(loop_scope="module")
async def test_untrusted_workspace_refuses_model_loading(client: LanguageClient, folder: Path) -> None:
    for method, params in [
        (P.RUN, {"file": str(folder / "x.bonsai.yaml")}),
        (P.COMPARE_WEIGHTS, {"base": "a", "models": ["b"]}),
        (P.TENSOR_TILES, {"model": "a", "tensor": "w", "level": 0, "x0": 0, "y0": 0, "x1": 1, "y1": 1}),
        (P.MODEL_EXPORT, {"id": "a", "dir": str(folder / "out"), "format": "hf"}),
    ]:
        with pytest.raises(JsonRpcException) as e:
            await request(client, method, params)
        assert e.value.code == P.WORKSPACE_UNTRUSTED, method
        assert "Workspace Trust" in e.value.message


@pytest.mark.asyncio(loop_scope="module")
async def test_wrong_params_unknown_methods_and_unknown_ids(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.LINEAGE, {"folder": 3})
    assert e.value.code == P.INVALID_PARAMS and "params.folder must be string" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.CANCEL, {"job": "j1"})
    assert e.value.code == P.INVALID_PARAMS and "params.jobId is missing" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await request(client, "bonsai/nothing", {})
    assert e.value.code == P.METHOD_NOT_FOUND
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.CANCEL, {"jobId": "j999"})
    assert e.value.code == P.NOT_FOUND
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RESULT_PAGE, {"resultId": "nope", "page": 0})
    assert e.value.code == P.NOT_FOUND
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.LINEAGE, {"folder": "/no/such/folder"})
    assert e.value.code == P.NOT_FOUND
    # still serving
    assert (await request(client, P.JOBS, {}))["jobs"] == []
