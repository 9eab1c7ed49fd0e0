"""`bonsai/lineage` statuses the store does not record: failed variants and stale models, through
a real server over stdio (runs in its worker), as the Lineage tree sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import request, run_job, until
from .workspace import EXPERIMENT, make_workspace

FRAGILE = (
    EXPERIMENT
    + """\
  - name: fragile
    from: prune-50
    ops:
      - test.explode: {why: "the fuse blew"}
"""
)
MENDED = (
    EXPERIMENT
    + """\
  - name: fragile
    from: prune-50
    ops:
      - prune.magnitude: {sparsity: 0.7}
"""
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lineage-status")
    make_workspace(root, FRAGILE)
    return root


async def _lineage(client: LanguageClient) -> list[dict[str, Any]]:
    result = await request(client, P.LINEAGE, {})
    P.check(result, P.LineageResult, "result")
    return result["models"]


def _named(models: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in models if m["name"] == name]


@pytest.mark.asyncio(loop_scope="module")
async def test_failed_variant_shows_until_a_run_makes_it(client: LanguageClient, folder: Path) -> None:
    job = await run_job(client, folder / "exp.bonsai.yaml", ["fragile"])
    assert job["state"] == "failed"
    models = await _lineage(client)
    (prune,) = _named(models, "prune-50")
    assert prune["status"] == "ok"
    (fragile,) = _named(models, "fragile")
    assert fragile["status"] == "failed" and "the fuse blew" in fragile["statusReason"]
    assert fragile["id"] == "failed:exp.bonsai.yaml:fragile"
    assert fragile["parent"] == prune["id"], "it hangs under the model it would derive from"
    assert fragile["op"] == "test.explode" and fragile["metrics"] == {}
    assert fragile["experiment"] == {"file": str(folder / "exp.bonsai.yaml"), "variant": "fragile"}
    assert (await _lineage(client)) == models, "answered the same while nothing changes"

    (folder / "exp.bonsai.yaml").write_text(MENDED)
    (fragile,) = _named(await _lineage(client), "fragile")
    assert fragile["status"] == "failed", "still failed until a run makes it"
    assert fragile["op"] == "prune.magnitude" and fragile["params"]["sparsity"] == 0.7
    assert (await run_job(client, folder / "exp.bonsai.yaml", ["fragile"]))["state"] == "done"
    (fragile,) = _named(await _lineage(client), "fragile")
    assert fragile["status"] == "ok" and not fragile["id"].startswith("failed:")


@pytest.mark.asyncio(loop_scope="module")
async def test_edited_parameter_makes_models_stale_until_rerun(client: LanguageClient, folder: Path) -> None:
    assert (await run_job(client, folder / "exp.bonsai.yaml", ["int8"]))["state"] == "done"
    models = await _lineage(client)
    assert all(m["status"] == "ok" for m in models), [(m["name"], m["status"]) for m in models]
    (old,) = _named(models, "prune-50")

    exp = folder / "exp.bonsai.yaml"
    exp.write_text(exp.read_text().replace("{sparsity: 0.5}", "{sparsity: 0.6}"))
    models = await _lineage(client)
    status = {m["name"]: m for m in models}
    assert status["prune-50"]["status"] == "stale"
    reason = status["prune-50"]["statusReason"]
    assert (
        "experiment file changed" in reason and "sparsity" in reason and "0.5" in reason and "0.6" in reason
    )
    # what derives from it is stale too; the base and other files' models are not
    assert status["int8"]["status"] == "stale" and "prune-50" in status["int8"]["statusReason"]
    assert status["fragile"]["status"] == "stale"
    assert status["toy"]["status"] == "ok"

    assert (await run_job(client, folder / "exp.bonsai.yaml", ["prune-50"]))["state"] == "done"
    models = await _lineage(client)
    prunes = _named(models, "prune-50")
    assert len(prunes) == 2 and all(m["status"] == "ok" for m in prunes), "the new fingerprint exists now"
    assert {m["id"] for m in prunes} >= {old["id"]}
    assert _named(models, "int8")[0]["status"] == "stale", "int8 was not re-made yet"
    assert (await run_job(client, folder / "exp.bonsai.yaml", ["int8", "fragile"]))["state"] == "done"
    assert all(m["status"] == "ok" for m in await _lineage(client))


@pytest.mark.asyncio(loop_scope="module")
async def test_saving_an_experiment_file_tells_the_views(client: LanguageClient, folder: Path) -> None:
    seen = client.lineage_changes  # type: ignore[attr-defined]
    before = len(seen)
    uri = (folder / "exp.bonsai.yaml").resolve().as_uri()
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    change = await until(
        lambda: seen[before] if len(seen) > before else None, 30, "bonsai/lineageChanged after a save"
    )
    assert Path(change["folder"]) == folder.resolve()
