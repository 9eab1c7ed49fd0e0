"""Cancelling a comparison over stdio by the job id its result names: the worker stops within
~2 s, the job ends `cancelled`, page requests answer at once, nothing is cached, and the server
goes on serving."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.compare.activations import KIND as ACTIVATIONS
from modelbonsai.lsp import protocol as P
from support.workspace import EXPERIMENT_HEAD

from .helpers import job_end, request, server_config, start_session, until, watch
from .workspace import make_workspace

EXPERIMENT = EXPERIMENT_HEAD + textwrap.dedent(
    """\
      - name: prune-50
        from: base
        ops:
          - prune.magnitude: {sparsity: 0.5}
    """
)
# Many small batches through wide layers: several seconds of work, with a cancellation check
# between batches.
INSTANCES = 6000
SLOW = {"instances": INSTANCES, "batchSize": 4, "mode": "both"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cancel")
    make_workspace(root, EXPERIMENT, hidden=(256, 256))
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage", maxInstances=INSTANCES)
    job = (await request(lsp_client, P.RUN, {"file": str(folder / "exp.bonsai.yaml")}))["jobId"]
    final = await job_end(lsp_client, job, 120)
    assert final["state"] == "done", final
    yield
    await lsp_client.shutdown_session()


def _changes(client: LanguageClient, job_id: str) -> list[dict[str, Any]]:
    return [c["job"] for c in client.job_changes if c["job"]["id"] == job_id]  # type: ignore[attr-defined]


def _cached_activations(folder: Path) -> int:
    with sqlite3.connect(folder / ".bonsai" / "lineage.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM cache WHERE kind = ?", (ACTIVATIONS,)).fetchone()[0])


async def _start_slow(client: LanguageClient, ids: dict[str, str]) -> dict[str, Any]:
    """A slow activation comparison, once it is running and has reported progress."""
    ref = await request(
        client, P.COMPARE_ACTIVATIONS, {"base": ids["toy"], "models": [ids["prune-50"]], "options": SLOW}
    )
    # answered early (before its only page exists), naming its job
    P.check(ref, P.ResultRef, "result")
    assert ref["done"] is False and ref["pages"] == 0 and "data" not in ref and ref["jobId"]
    await until(
        lambda: any(
            j["state"] == "running" and (j.get("progress") or 0) > 0 for j in _changes(client, ref["jobId"])
        ),
        60,
        "the comparison to make progress",
    )
    return ref


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_a_comparison_by_its_job_id(client: LanguageClient, folder: Path) -> None:
    ids = {m["name"]: m["id"] for m in (await request(client, P.LINEAGE, {}))["models"]}
    ref = await _start_slow(client, ids)
    job_id = ref["jobId"]

    await asyncio.sleep(0.5)
    done_so_far = max(j.get("progress") or 0 for j in _changes(client, job_id))
    assert done_so_far < 0.5, f"the comparison is too quick to test cancelling it ({done_so_far:.0%} done)"
    t0 = time.monotonic()
    assert await request(client, P.CANCEL, {"jobId": job_id}) == {"cancelled": True}
    final = await job_end(client, job_id, 10)
    stopped = time.monotonic() - t0
    assert final["state"] == "cancelled"
    assert stopped < 2.0, f"the worker stopped {stopped:.2f} s after the cancel"
    (listed,) = [j for j in (await request(client, P.JOBS, {}))["jobs"] if j["id"] == job_id]
    assert listed["state"] == "cancelled"

    # the result ended cancelled: asking for its page answers at once, with LSP's own code
    t0 = time.monotonic()
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RESULT_PAGE, {"resultId": ref["resultId"], "page": 0})
    assert e.value.code == P.REQUEST_CANCELLED and "cancelled" in e.value.message
    assert time.monotonic() - t0 < 1.0
    assert await request(client, P.CANCEL, {"jobId": job_id}) == {"cancelled": False}

    # nothing half-made was cached: the same comparison computes again (no instant cache hit)
    assert _cached_activations(folder) == 0
    again = await _start_slow(client, ids)
    assert again["jobId"] != job_id
    assert await request(client, P.CANCEL, {"jobId": again["jobId"]}) == {"cancelled": True}
    assert (await job_end(client, again["jobId"], 10))["state"] == "cancelled"
    assert _cached_activations(folder) == 0

    # $/cancelRequest naming the compare request (what the editor sends when the panel's Cancel
    # comes before the reply) cancels its job too, answered or not
    known = {c["job"]["id"] for c in client.job_changes}  # type: ignore[attr-defined]
    fut = client.protocol.send_request(
        P.COMPARE_ACTIVATIONS, {"base": ids["toy"], "models": [ids["prune-50"]], "options": SLOW}
    )
    msg_id = next(k for k, v in client.protocol._request_futures.items() if v is fut)
    third = await until(
        lambda: next(
            (
                c["job"]
                for c in client.job_changes  # type: ignore[attr-defined]
                if c["job"]["id"] not in known and c["job"]["state"] == "running"
            ),
            None,
        ),
        30,
        "the third comparison to start",
    )
    client.protocol.notify("$/cancelRequest", lsp.CancelParams(id=msg_id))
    assert (await job_end(client, third["id"], 10))["state"] == "cancelled"
    assert _cached_activations(folder) == 0

    # and the server still serves: a small comparison completes (and that one is cached)
    small = await request(
        client,
        P.COMPARE_ACTIVATIONS,
        {"base": ids["toy"], "models": [ids["prune-50"]], "options": {"instances": 16, "mode": "both"}},
    )
    if "data" not in small:
        small = await request(client, P.RESULT_PAGE, {"resultId": small["resultId"], "page": 0})
    assert small["pages"] == 1 and "data" in small and small["jobId"]
    assert (await job_end(client, small["jobId"], 30))["state"] == "done"
    assert _cached_activations(folder) == 1
