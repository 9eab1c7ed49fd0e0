"""Comparison requests over stdio, decoded and checked against the engine called directly;
the large-payload file channel; instances."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai import wire
from modelbonsai.lsp import protocol as P

from .helpers import job_end, request, server_config, start_session, watch
from .workspace import EXPERIMENT, make_workspace

HIDDEN = (1536, 1024)  # a 1024 x 1536 weight: its level-0 tiles are ~12 MB, over the inline limit


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    make_workspace(root, EXPERIMENT, hidden=HIDDEN)
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage", maxInstances=24)
    job = (await request(lsp_client, P.RUN, {"file": str(folder / "exp.bonsai.yaml")}))["jobId"]
    final = await job_end(lsp_client, job, 120)
    assert final["state"] == "done", final
    yield
    await lsp_client.shutdown_session()


async def _models(client: LanguageClient) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in (await request(client, P.LINEAGE, {}))["models"]}


async def _pages(client: LanguageClient, first: dict[str, Any]) -> list[bytes]:
    """Every page of a result, inline or from its file (checking size and sha256)."""
    P.check(first, P.ResultRef, "result")
    out, ref = [], first
    while True:
        if ref["page"] == len(out) and "data" in ref:
            out.append(base64.b64decode(ref["data"]))
        elif ref["page"] == len(out) and "file" in ref:
            f = ref["file"]
            data = Path(f["path"]).read_bytes()
            assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
            out.append(data)
        if ref["done"] and len(out) >= ref["pages"]:
            return out
        ref = await request(client, P.RESULT_PAGE, {"resultId": first["resultId"], "page": len(out)})
        P.check(ref, P.ResultRef, "result")


def _same(got: wire.Result, want_kind: str, want_meta: dict[str, Any], want_tensors: dict[str, Any]) -> None:
    import json

    assert got.kind == want_kind
    # meta went through msgpack: compare as JSON (tuples become lists)
    assert json.loads(json.dumps(got.meta, default=str)) == json.loads(json.dumps(want_meta, default=str))
    assert set(got.tensors) == set(want_tensors)
    for k, v in want_tensors.items():
        np.testing.assert_array_equal(got.tensors[k], np.asarray(v), err_msg=k)


def _store(folder: Path):
    from modelbonsai.store import LineageStore

    return LineageStore.open(folder)


def _module(store: Any, rec: Any) -> Any:
    from modelbonsai.artifacts import load_artifact
    from modelbonsai.load import load_skeleton

    root = rec
    while root.parent_id:
        root = store.get_model(root.parent_id)
    return load_artifact(
        store.artifact_path(rec), lambda: load_skeleton(root.base_spec, store.workspace)
    ).module


@pytest.mark.asyncio(loop_scope="module")
async def test_compare_weights_matches_engine(client: LanguageClient, folder: Path) -> None:
    from modelbonsai.compare.api import artifact_kept_indices
    from modelbonsai.compare.sources import artifact_source
    from modelbonsai.compare.weights import compare_weights

    m = await _models(client)
    ref = await request(
        client, P.COMPARE_WEIGHTS, {"base": m["toy"]["id"], "models": [m["prune-50"]["id"], m["int8"]["id"]]}
    )
    pages = await _pages(client, ref)
    assert len(pages) == 2
    store = _store(folder)
    base_dir = store.artifact_path(m["toy"]["id"])
    for page, name in zip(pages, ["prune-50", "int8"], strict=True):
        odir = store.artifact_path(m[name]["id"])
        direct = compare_weights(
            artifact_source(base_dir),
            {m[name]["id"]: artifact_source(odir)},
            base_id=m["toy"]["id"],
            kept_indices={m[name]["id"]: artifact_kept_indices(odir)},
        )[m[name]["id"]]
        _same(wire.decode_result(page), *direct.wire())
    got = wire.decode_result(pages[0])
    model = next(n for n in got.meta["tree"] if n["path"] == "")
    assert 0.45 < model["metrics"]["sparsity_other"] <= 0.5  # 50% of the weights, biases kept


@pytest.mark.asyncio(loop_scope="module")
async def test_compare_behavior_matches_engine(client: LanguageClient, folder: Path) -> None:
    from modelbonsai.compare.behavior import compare_behavior
    from modelbonsai.runner import load_evaluation

    m = await _models(client)
    ref = await request(
        client,
        P.COMPARE_BEHAVIOR,
        {"base": m["toy"]["id"], "models": [m["int8"]["id"]], "options": {"bootstrap": 200}},
    )
    (page,) = await _pages(client, ref)
    store = _store(folder)
    base_ev = load_evaluation(store, store.get_model(m["toy"]["id"]))
    other_ev = load_evaluation(store, store.get_model(m["int8"]["id"]))
    direct = compare_behavior(
        base_ev,
        {m["int8"]["id"]: other_ev},
        base_id=m["toy"]["id"],
        class_names=["zero", "one", "two"],
        bootstrap=200,
        seed=0,
    )[m["int8"]["id"]]
    got = wire.decode_result(page)
    _same(got, *direct.wire())
    # every group lists its rows' instance ids (the browser opens them)
    groups = got.meta["groups"]
    assert groups and all(g["ids"] and set(g["ids"]) <= set(got.meta["ids"]) for g in groups)
    by_label = [g for g in groups if g.get("grouping") == "label"] or groups
    assert sum(len(g["ids"]) for g in by_label) == len(got.meta["ids"])


@pytest.mark.asyncio(loop_scope="module")
async def test_compare_activations_matches_engine(client: LanguageClient, folder: Path) -> None:
    import sys

    from modelbonsai.compare.activations import ActivationOptions, compare_activations
    from modelbonsai.tasks import get_task_class

    m = await _models(client)
    ref = await request(
        client,
        P.COMPARE_ACTIVATIONS,
        {
            "base": m["toy"]["id"],
            "models": [m["prune-50"]["id"]],
            "options": {"instances": 16, "mode": "both"},
        },
    )
    (page,) = await _pages(client, ref)
    store = _store(folder)
    sys.path.insert(0, str(folder))
    task = get_task_class("tasks.py:ToyTask", folder)({}, folder, max_instances=16)
    direct = compare_activations(
        _module(store, store.get_model(m["toy"]["id"])),
        {m["prune-50"]["id"]: _module(store, store.get_model(m["prune-50"]["id"]))},
        task,
        options=ActivationOptions(instances=16, mode="both"),
        base_id=m["toy"]["id"],
    )[m["prune-50"]["id"]]
    kind, meta, tensors = direct.wire()
    got = wire.decode_result(page)
    assert got.kind == kind and got.meta["modules"] == meta["modules"] if "modules" in meta else True
    for k, v in tensors.items():
        np.testing.assert_allclose(got.tensors[k], np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.asyncio(loop_scope="module")
async def test_tiles_through_the_file_channel(client: LanguageClient, folder: Path) -> None:
    from modelbonsai.compare.sources import artifact_source
    from modelbonsai.compare.tensors import difference, tiles_wire

    m = await _models(client)
    params = {
        "model": m["toy"]["id"],
        "tensor": "2.weight",
        "other": m["int8"]["id"],
        "source": "weight",
        "level": 0,
        "x0": 0,
        "y0": 0,
        "x1": 1536,
        "y1": 1024,
    }
    ref = await request(client, P.TENSOR_TILES, params)
    assert "file" in ref and "data" not in ref, "a ~12 MB page goes through a file"
    path = Path(ref["file"]["path"])
    assert path.parent == (folder / "storage" / "results") and path.stat().st_size > P.MAX_INLINE_PAGE_BYTES
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")], "written atomically"
    (page,) = await _pages(client, ref)
    store = _store(folder)
    b = artifact_source(store.artifact_path(m["toy"]["id"])).get("2.weight")
    o = artifact_source(store.artifact_path(m["int8"]["id"])).get("2.weight")
    kind, meta, tensors = tiles_wire(
        difference(b, o, None),
        0,
        (0, 0, 1024, 1536),
        meta={"name": "2.weight", "models": {"model": m["int8"]["id"], "minus": m["toy"]["id"]}},
    )
    _same(wire.decode_result(page), kind, meta, tensors)
    # a small window is inline
    small = await request(client, P.TENSOR_TILES, {**params, "x1": 10, "y1": 10})
    assert "data" in small and "file" not in small
    assert wire.decode_result(base64.b64decode(small["data"])).meta["tiles"][0]["key"] == "L0_0_0"


def _toy_task(folder: Path, max_instances: int) -> Any:
    import sys

    from modelbonsai.tasks import get_task_class

    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return get_task_class("tasks.py:ToyTask", folder)({}, folder, max_instances=max_instances)


@pytest.mark.asyncio(loop_scope="module")
async def test_activation_tiles_match_engine(client: LanguageClient, folder: Path) -> None:
    from modelbonsai.compare import api

    m = await _models(client)
    toy, pruned = m["toy"]["id"], m["prune-50"]["id"]
    store = _store(folder)
    task = _toy_task(folder, 24)
    window = (0, 0, 3, 1536)  # (y0, x0, y1, x1): 3 instances x 1536 channels
    base = {
        "model": toy,
        "tensor": "0",
        "source": "activation",
        "instances": ["i0", "i7", "i3"],
        "level": 0,
        "x0": 0,
        "y0": 0,
        "x1": 1536,
        "y1": 3,
    }
    (page,) = await _pages(client, await request(client, P.TENSOR_TILES, base))
    direct = api.tensor_tiles(
        None,
        toy,
        "0",
        0,
        window,
        source="activation",
        model=_module(store, store.get_model(toy)),
        task=task,
        task_key={},
        instances=["i0", "i7", "i3"],
    )
    got = wire.decode_result(page)
    assert got.meta["source"] == "activation" and got.meta["instances"] == ["i0", "i7", "i3"]
    _same(got, direct.result.kind, direct.result.meta, direct.result.tensors)

    # the difference pruned - toy of the first Linear's output
    (page,) = await _pages(client, await request(client, P.TENSOR_TILES, {**base, "other": pruned}))
    direct = api.tensor_tiles(
        None,
        pruned,
        "0",
        0,
        window,
        source="activation",
        model=_module(store, store.get_model(pruned)),
        task=task,
        task_key={},
        instances=["i0", "i7", "i3"],
        minus=(toy, _module(store, store.get_model(toy))),
    )
    got = wire.decode_result(page)
    assert got.meta["models"] == {"model": pruned, "minus": toy}
    _same(got, direct.result.kind, direct.result.meta, direct.result.tensors)
    assert any(np.abs(t).max() > 0 for k, t in got.tensors.items()), "pruning changed the activations"

    # the root module's output (its name is ""): every job title names what and whose
    ref = await request(client, P.TENSOR_TILES, {**base, "tensor": "", "x1": 3})
    await _pages(client, ref)
    titles = {c["job"]["title"] for c in client.job_changes if c["job"]["kind"] == "compare"}  # type: ignore[attr-defined]
    assert {
        "Activation tiles of 0 (toy)",
        "Activation tiles of 0 (prune-50 − toy)",
        "Activation tiles of the model's output (toy)",
    } <= titles
    assert not any(t.startswith("Tiles of") for t in titles)

    with pytest.raises(JsonRpcException) as e:
        await request(client, P.TENSOR_TILES, {**base, "instances": []})
    assert e.value.code == P.USER_ERROR and "'instances'" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.TENSOR_TILES, {**base, "tensor": "9"})
    assert e.value.code == P.JOB_FAILED and "no module '9'" in e.value.message


@pytest.mark.asyncio(loop_scope="module")
async def test_instances_and_bad_compare_requests(client: LanguageClient, folder: Path) -> None:
    m = await _models(client)
    ref = await request(
        client, P.INSTANCES, {"ids": ["i0", "i5"], "models": [m["toy"]["id"], m["int8"]["id"]]}
    )
    (page,) = await _pages(client, ref)
    got = wire.decode_result(page)
    assert [i["text"] for i in got.meta["instances"]] == ["instance i0", "instance i5"]
    assert set(got.meta["predictions"]) == {m["toy"]["id"], m["int8"]["id"]}
    assert got.meta["classNames"] == ["zero", "one", "two"]
    assert "predictionTokens" not in got.meta  # class indices: shown by their class names

    with pytest.raises(JsonRpcException) as e:
        await request(client, P.COMPARE_WEIGHTS, {"base": m["toy"]["id"], "models": ["nope"]})
    assert e.value.code == P.NOT_FOUND and "nope" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await request(
            client,
            P.COMPARE_WEIGHTS,
            {"base": m["toy"]["id"], "models": [m["int8"]["id"]], "options": {"bins": 3}},
        )
    assert e.value.code == P.USER_ERROR and "unknown option 'bins'" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await request(
            client,
            P.TENSOR_TILES,
            {
                "model": m["toy"]["id"],
                "tensor": "nothing.weight",
                "level": 0,
                "x0": 0,
                "y0": 0,
                "x1": 1,
                "y1": 1,
            },
        )
    assert e.value.code == P.JOB_FAILED and "no tensor 'nothing.weight'" in e.value.message
    assert (await request(client, P.JOBS, {}))["jobs"]  # still serving


@pytest.mark.asyncio(loop_scope="module")
async def test_delete_and_export(client: LanguageClient, folder: Path) -> None:
    m = await _models(client)
    out = await request(
        client,
        P.MODEL_EXPORT,
        {"id": m["int8"]["id"], "dir": str(folder / "exported"), "format": "safetensors"},
    )
    assert Path(out["path"]).is_file() and Path(out["path"]).suffix == ".safetensors"
    # again into the same folder, now holding the export and the user's tokenizer: refused at once
    # with a code the client asks the user about, naming what a forced export replaces and keeps
    (folder / "exported" / "tokenizer.json").write_text("{}")
    first = Path(out["path"]).read_bytes()
    again = {"id": m["prune-50"]["id"], "dir": str(folder / "exported"), "format": "safetensors"}
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.MODEL_EXPORT, again)
    assert e.value.code == P.EXPORT_EXISTS
    assert "replaces model.safetensors" in e.value.message and "keeps tokenizer.json" in e.value.message
    assert Path(out["path"]).read_bytes() == first
    out = await request(client, P.MODEL_EXPORT, {**again, "force": True})
    assert (
        Path(out["path"]).read_bytes() != first
        and (folder / "exported" / "tokenizer.json").read_text() == "{}"
    )
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.MODEL_DELETE, {"id": m["prune-50"]["id"]})
    assert e.value.code == P.USER_ERROR and "int8" in e.value.message
    gone = await request(client, P.MODEL_DELETE, {"id": m["prune-50"]["id"], "recursive": True})
    assert set(gone["deleted"]) == {m["prune-50"]["id"], m["int8"]["id"]}
    await asyncio.sleep(0)
    assert set(await _models(client)) == {"toy"}
