"""Editing only a task's `max_instances` makes the lineage show the models stale (a run would
re-evaluate them: the server judges with the runner's evaluation fingerprint), and a run from
the server makes them current again. Through a real server over stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P
from modelbonsai.runner import load_evaluation
from modelbonsai.store import LineageStore

from .helpers import request, run_job
from .workspace import make_workspace


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stale-eval")
    make_workspace(root)
    return root


async def _statuses(client: LanguageClient) -> dict[str, tuple[str, str]]:
    result = await request(client, P.LINEAGE, {})
    P.check(result, P.LineageResult, "result")
    return {m["name"]: (m["status"], m.get("statusReason", "")) for m in result["models"]}


@pytest.mark.asyncio(loop_scope="module")
async def test_edited_max_instances_is_stale_until_a_run_re_evaluates(client: LanguageClient, folder: Path) -> None:
    assert (await run_job(client, folder / "exp.bonsai.yaml", ["int8"]))["state"] == "done"
    assert {s for s, _ in (await _statuses(client)).values()} == {"ok"}

    exp = folder / "exp.bonsai.yaml"
    exp.write_text(exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 10"))
    status = await _statuses(client)
    assert set(status) == {"toy", "prune-50", "int8"}
    for name, (state, why) in status.items():
        assert state == "stale", name
        assert why == "evaluated on every instance, a run now evaluates 10 instances: run to re-evaluate"

    job = await run_job(client, folder / "exp.bonsai.yaml", ["int8"])
    assert job["state"] == "done"
    assert {s for s, _ in (await _statuses(client)).values()} == {"ok"}
    with LineageStore.open(folder) as store:
        assert len(store.list_models()) == 3, "re-evaluated in place, nothing re-made"
        assert {int(load_evaluation(store, m).outputs.shape[0]) for m in store.list_models()} == {10}
