"""Editing only a task's `max_instances` makes the lineage show the models stale (a run would
re-evaluate them: the server judges with the runner's evaluation fingerprint), and a run from
the server makes them current again. Through a real server over stdio."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P
from modelbonsai.runner import load_evaluation
from modelbonsai.store import LineageStore

from .helpers import job_end, request, run_job
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
async def test_edited_max_instances_is_stale_until_a_run_re_evaluates(
    client: LanguageClient, folder: Path
) -> None:
    assert (await run_job(client, folder / "exp.bonsai.yaml", ["int8"]))["state"] == "done"
    assert {s for s, _ in (await _statuses(client)).values()} == {"ok"}

    exp = folder / "exp.bonsai.yaml"
    exp.write_text(
        exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 10")
    )
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


@pytest.mark.asyncio(loop_scope="module")
async def test_a_run_marks_and_says_what_it_re_evaluates_unasked(
    client: LanguageClient, folder: Path
) -> None:
    exp = folder / "exp.bonsai.yaml"
    text = exp.read_text()
    assert "max_instances: 10" in text, "runs after the test above"
    # another limit, and a slow variant below int8: running only it re-evaluates its three
    # ancestors first, which nobody named
    exp.write_text(
        text.replace("max_instances: 10", "max_instances: 12")
        + "  - name: slow\n    from: int8\n    ops:\n      - test.slow: {steps: 60, delay: 0.05}\n"
    )
    why = "evaluated on 10 instances, a run now evaluates 12 instances"
    job_id = (await request(client, P.RUN, {"file": str(exp), "variants": ["slow"]}))["jobId"]
    marked: dict[str, str] = {}

    async def seen_marked() -> bool:
        for name, (state, reason) in (await _statuses(client)).items():
            if state == "running" and "not asked for" in reason:
                marked[name] = reason
        return set(marked) == {"toy", "prune-50", "int8"}

    for _ in range(400):
        if await seen_marked():
            break
        await asyncio.sleep(0.02)
    assert marked == {
        n: f"re-evaluated by a running job, not asked for: {why}" for n in ("toy", "prune-50", "int8")
    }
    job = await job_end(client, job_id)
    assert job["state"] == "done"
    messages = [c["job"].get("message", "") for c in client.job_changes if c["job"]["id"] == job_id]  # type: ignore[attr-defined]
    assert (
        f"first re-evaluates toy (not asked for: {why}); re-evaluates prune-50 (not asked for: {why}); "
        f"re-evaluates int8 (not asked for: {why})" in messages
    )
    assert {s for s, _ in (await _statuses(client)).values()} == {"ok"}, "marks gone with the job"
