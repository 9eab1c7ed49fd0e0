"""Runs through the server: progress sequence, cancellation, failures, reads while a job runs."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import job_end, request, until
from .workspace import EXPERIMENT, make_workspace

SLOW = (
    EXPERIMENT
    + """\
  - name: slow
    from: base
    ops:
      - test.slow: {steps: 8, delay: 0.05}
  - name: very-slow
    from: base
    ops:
      - test.slow: {steps: 400, delay: 0.05}
  - name: broken
    from: base
    ops:
      - test.explode: {why: "the fuse blew"}
"""
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    make_workspace(root, SLOW)
    return root


@pytest.mark.asyncio(loop_scope="module")
async def test_run_reports_progress_begin_report_end(client: LanguageClient, folder: Path) -> None:
    token = "run-slow"
    client.progress_reports[token] = []  # a client-made token (the request carries it)
    exp = folder / "exp.bonsai.yaml"
    result = await request(
        client, P.RUN, {"file": exp.as_uri(), "variants": ["slow"], "workDoneToken": token}
    )
    P.check(result, P.RunResult, "result")
    job = await job_end(client, result["jobId"])
    assert job["state"] == "done", job
    await until(
        lambda: any(isinstance(v, lsp.WorkDoneProgressEnd) for v in client.progress_reports.get(token, [])),
        10,
        "progress end",
    )
    reports = client.progress_reports[token]
    assert isinstance(reports[0], lsp.WorkDoneProgressBegin)
    assert reports[0].cancellable is True and "slow" in reports[0].title
    assert isinstance(reports[-1], lsp.WorkDoneProgressEnd)
    middle = reports[1:-1]
    assert all(isinstance(r, lsp.WorkDoneProgressReport) for r in middle)
    pcts = [r.percentage for r in middle if r.percentage is not None]
    assert len(pcts) >= 3 and pcts == sorted(pcts) and 0 <= pcts[0] and pcts[-1] <= 100
    assert any(r.message and "step" in r.message for r in middle), [r.message for r in middle]
    # every jobChanged notification has the protocol's shape; the lineage now holds the model
    for change in client.job_changes:  # type: ignore[attr-defined]
        P.check(change, P.JobChangedParams, "jobChanged")
    assert client.lineage_changes  # type: ignore[attr-defined]
    assert client.lens_refreshes, "CodeLens refreshed when the lineage changed"  # type: ignore[attr-defined]
    lineage = await request(client, P.LINEAGE, {"folder": folder.as_uri()})
    P.check(lineage, P.LineageResult, "result")
    names = {m["name"]: m for m in lineage["models"]}
    assert set(names) == {"toy", "slow"}
    assert names["slow"]["parent"] == names["toy"]["id"] and names["slow"]["op"] == "test.slow"
    assert names["slow"]["experiment"] == {"file": str(exp.resolve()), "variant": "slow"}
    assert any(
        m["name"] == "accuracy" and m["headline"] for m in P.model_metrics(names["slow"], lineage["metrics"])
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_mid_run_leaves_no_partial_model(client: LanguageClient, folder: Path) -> None:
    exp = folder / "exp.bonsai.yaml"
    before = {m["id"] for m in (await request(client, P.LINEAGE, {}))["models"]}
    client.progress_reports[11] = []
    result = await request(client, P.RUN, {"file": str(exp), "variants": ["very-slow"], "workDoneToken": 11})
    job_id = result["jobId"]
    await until(
        lambda: any(
            c["job"]["id"] == job_id and c["job"].get("message", "").startswith("very-slow: step 3")
            for c in client.job_changes
        ),
        30,
        "the slow op to be under way",
    )  # type: ignore[attr-defined]
    tmp = folder / ".bonsai" / "tmp"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    client.window_work_done_progress_cancel(
        lsp.WorkDoneProgressCancelParams(token=11)
    )  # Cancel button of VS Code's progress notification
    job = await job_end(client, job_id, 10)
    assert job["state"] == "cancelled"
    assert loop.time() - t0 < 2.0, "a cancelled job stops within a second or two"
    after = {m["id"] for m in (await request(client, P.LINEAGE, {}))["models"]}
    assert after == before, "a cancelled run stores nothing"
    leftovers = [p for p in tmp.iterdir() if not p.name.endswith(".lock")] if tmp.exists() else []
    assert leftovers == [] and not any((folder / ".bonsai" / "artifacts").glob("*/*.partial"))
    artifacts = {p.name for p in (folder / ".bonsai" / "artifacts").iterdir()}
    assert artifacts == before, "no artifact folder without its model"


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_request_and_bonsai_cancel(client: LanguageClient, folder: Path) -> None:
    exp = folder / "exp.bonsai.yaml"
    # bonsai/cancel on a running job, and on a job still queued behind it (with its position)
    first = (await request(client, P.RUN, {"file": str(exp), "variants": ["very-slow"]}))["jobId"]
    second = (await request(client, P.RUN, {"file": str(exp), "variants": ["very-slow"], "force": True}))[
        "jobId"
    ]
    jobs = {j["id"]: j for j in (await request(client, P.JOBS, {}))["jobs"]}
    assert jobs[second]["state"] == "queued" and jobs[second]["position"] == 1
    assert (await request(client, P.CANCEL, {"jobId": second})) == {"cancelled": True}
    assert (await job_end(client, second, 5))["state"] == "cancelled"
    assert (await request(client, P.CANCEL, {"jobId": first})) == {"cancelled": True}
    assert (await job_end(client, first, 5))["state"] == "cancelled"
    assert (await request(client, P.CANCEL, {"jobId": first})) == {"cancelled": False}

    # $/cancelRequest naming the bonsai/run request cancels the job it started
    fut = client.protocol.send_request("bonsai/run", {"file": str(exp), "variants": ["very-slow"]})
    msg_id = next(k for k, v in client.protocol._request_futures.items() if v is fut)
    job_id = (await asyncio.wrap_future(fut))["jobId"]
    await until(
        lambda: any(c["job"]["id"] == job_id and c["job"]["state"] == "running" for c in client.job_changes),
        10,
        "job to start",
    )  # type: ignore[attr-defined]
    client.protocol.notify("$/cancelRequest", lsp.CancelParams(id=msg_id))
    assert (await job_end(client, job_id, 5))["state"] == "cancelled"


@pytest.mark.asyncio(loop_scope="module")
async def test_failing_job_is_marked_failed_and_server_lives(client: LanguageClient, folder: Path) -> None:
    exp = folder / "exp.bonsai.yaml"
    job_id = (await request(client, P.RUN, {"file": str(exp), "variants": ["broken"]}))["jobId"]
    job = await job_end(client, job_id)
    assert job["state"] == "failed"
    assert "the fuse blew" in job["message"] and "test.explode" in job["message"]
    assert (await request(client, P.JOBS, {}))["jobs"]
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RUN, {"file": str(exp), "variants": ["nope"]})
    assert e.value.code == P.USER_ERROR and "no variant named nope" in e.value.message
    bad = folder / "bad.bonsai.yaml"
    bad.write_text(
        "base:\n  load: model.safetensors\nvariants:\n  - name: x\n    ops:\n      - prune.magnitude: {sparsity: 2}\n"
    )
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RUN, {"file": str(bad)})
    assert e.value.code == P.USER_ERROR and "sparsity" in e.value.message and "6:" in e.value.message


@pytest.mark.asyncio(loop_scope="module")
async def test_200_lineage_requests_while_a_job_runs(client: LanguageClient, folder: Path) -> None:
    exp = folder / "exp.bonsai.yaml"
    job_id = (await request(client, P.RUN, {"file": str(exp), "variants": ["very-slow"], "force": True}))[
        "jobId"
    ]
    await until(
        lambda: any(c["job"]["id"] == job_id and c["job"]["state"] == "running" for c in client.job_changes),
        10,
        "job to start",
    )  # type: ignore[attr-defined]
    results = await asyncio.wait_for(
        asyncio.gather(*[request(client, P.LINEAGE, {}) for _ in range(200)]), 60
    )
    assert len(results) == 200
    assert all(r == results[0] for r in results) and results[0]["models"]
    jobs = (await request(client, P.JOBS, {}))["jobs"]
    assert any(j["id"] == job_id and j["state"] == "running" for j in jobs), "the job was still running"
    await request(client, P.CANCEL, {"jobId": job_id})
    assert (await job_end(client, job_id, 5))["state"] == "cancelled"


def test_workspace_copy_is_runnable(folder: Path, tmp_path: Path) -> None:
    # guards the fixture itself: the slow op file is where the experiment says
    shutil.copytree(folder, tmp_path / "copy", ignore=shutil.ignore_patterns(".bonsai", "storage"))
    assert (tmp_path / "copy" / "my_ops.py").is_file()
