"""bonsai/model/measure: a job that measures models with their base in turn; the lineage carries
each latency's spread and noisy flag."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import job_end, request, run_job, server_config, start_session, watch
from .workspace import EXPERIMENT, make_workspace


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("measure")
    make_workspace(root, EXPERIMENT)
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage")
    final = await run_job(lsp_client, folder / "exp.bonsai.yaml", ["prune-50"])
    assert final["state"] == "done", final
    yield
    await lsp_client.shutdown_session()


def _count(folder: Path, model_id: str) -> int:
    from modelbonsai.store import LineageStore
    from modelbonsai.store.measurements import history

    with LineageStore.open(folder) as store, store._tx() as c:
        return len(history(c, model_id))


@pytest.mark.asyncio(loop_scope="module")
async def test_measure_job_adds_to_the_history_and_the_lineage_shows_spreads(
    client: LanguageClient, folder: Path
) -> None:
    reply = await request(client, P.LINEAGE, {})
    P.check(reply, P.LineageResult, "result")
    models: dict[str, Any] = {m["name"]: m for m in reply["models"]}
    key = next(k for k, d in reply["metrics"].items() if d["name"] == "latency")
    for name in ("toy", "prune-50"):
        spread = models[name]["spreads"][key]
        assert spread["spread"] >= 0 and isinstance(spread["noisy"], bool)
    other = models["prune-50"]
    assert _count(folder, other["id"]) == 1
    # a measurement written by another process (a newer protocol: batch 999) supersedes the run's;
    # the server re-reads that model though its id, parent and evaluation are unchanged
    _inject(folder, other["id"], 1e6)
    shown = await until_value(client, "prune-50", key, 1e6)
    assert shown["spreads"][key]["noisy"] is False

    out = await request(client, P.MODEL_MEASURE, {"ids": [other["id"]]})
    P.check(out, P.RunResult, "result")
    final = await job_end(client, out["jobId"], 120)
    assert final["state"] == "done", final
    assert "measured: toy" in final["message"] and "prune-50" in final["message"]
    # the base was measured with it; both keep every measurement
    assert _count(folder, models["toy"]["id"]) == 2
    # the lineage re-reads the measured models (same ids, same evaluation: new metrics)
    # (the on-demand protocol is the newest again: its figure replaces the injected one)
    assert _stored(folder, other["id"]) < 1e6
    after = await until_value(client, "prune-50", key, _stored(folder, other["id"]))
    assert key in after["spreads"]
    assert _count(folder, other["id"]) == 3


@pytest.mark.asyncio(loop_scope="module")
async def test_measure_an_unknown_model_is_not_found(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.MODEL_MEASURE, {"ids": ["nothing-like-it"]})
    assert e.value.code == P.NOT_FOUND


async def until_value(client: LanguageClient, name: str, key: str, value: float) -> dict[str, Any]:
    """The model `name` once the lineage shows `value` for metric `key`."""

    async def shown() -> dict[str, Any] | None:
        for m in (await request(client, P.LINEAGE, {}))["models"]:
            if m["name"] == name and m["metrics"].get(key) == pytest.approx(value):
                return m  # type: ignore[no-any-return]
        return None

    for _ in range(100):
        m = await shown()
        if m is not None:
            return m
        await asyncio.sleep(0.1)
    raise AssertionError(f"the lineage never showed {name} {key} = {value}")


def _inject(folder: Path, model_id: str, ms: float) -> None:
    from modelbonsai.metrics import latency_metrics
    from modelbonsai.metrics.efficiency import LatencyProtocol, summarize
    from modelbonsai.store import LineageStore

    lat = summarize(
        [[ms / 1000]] * 3,
        protocol=LatencyProtocol(),
        batch_size=999,
        device="cpu",
        method="thread CPU time, 1 thread",
        warmup=1,
    )
    with LineageStore.open(folder) as store:
        store.put_metrics(model_id, latency_metrics(lat))


def _stored(folder: Path, model_id: str) -> float:
    from modelbonsai.store import LineageStore

    with LineageStore.open(folder) as store:
        return next(m.value for m in store.metrics(model_id) if m.name == "latency")
