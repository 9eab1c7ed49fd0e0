"""A variant whose fingerprint matched another's model shows on that model in `bonsai/lineage`
(the Lineage tree and the Model Map name it there), through a real server over stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import request, run_job
from .workspace import EXPERIMENT, make_workspace

TWIN = (
    EXPERIMENT
    + """\
  - name: twin
    from: base
    ops:
      - prune.magnitude: {sparsity: 0.5}
      - quantize.weights: {bits: 8}
"""
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lineage-aliases")
    make_workspace(root, TWIN)
    return root


@pytest.mark.asyncio(loop_scope="module")
async def test_a_matched_variant_is_named_on_its_model(client: LanguageClient, folder: Path) -> None:
    job = await run_job(client, folder / "exp.bonsai.yaml", [])
    assert job["state"] == "done", job
    result = await request(client, P.LINEAGE, {})
    P.check(result, P.LineageResult, "result")
    by_name = {m["name"]: m for m in result["models"]}
    assert "twin" not in by_name and "twin/1" not in by_name  # made once, under the first name
    assert by_name["int8"]["aliases"] == ["twin"]
    assert by_name["prune-50"]["aliases"] == ["twin/1"]
    assert "aliases" not in by_name["toy"]
    assert all(m["status"] == "ok" for m in result["models"])
    # the rest of a recipe (the Model Map's recipe diff): seed and what the metrics came from
    assert {m["seed"] for m in result["models"]} == {3}  # the seed the toy experiment sets
    evals = {(m["evaluation"]["task"], m["evaluation"]["instances"]) for m in result["models"]}
    assert len(evals) == 1 and next(iter(evals))[1].count("/") == 1, evals
