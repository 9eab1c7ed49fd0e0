"""bonsai/scan, bonsai/scans, bonsai/scan/budget: a scan job over the file's `scan:` section, its
stored record read back, and a budgeted variant as the edit that appends it to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P
from modelbonsai.lsp.scan_requests import insertion
from modelbonsai.scan.budget import under_size, variant_yaml
from modelbonsai.scan.measure import ScanResult
from modelbonsai.scan.write import insert_variant
from support.workspace import experiment_head

from .helpers import job_end, request, server_config, start_session, watch
from .workspace import make_workspace

SCAN = """\
scan:
  settings:
    - quantize.weights: {bits: [2, 8], granularity: tensor}
  fidelity: proxy
"""
VARIANTS = "  - name: a\n    ops:\n      - prune.magnitude: {sparsity: 0.1}\n\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scan")
    make_workspace(root, experiment_head("my_ops.py").replace("variants:\n", SCAN + "variants:\n") + VARIANTS)
    (root / "plain.bonsai.yaml").write_text(experiment_head("my_ops.py") + VARIANTS)
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage")
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_scan_job_then_scans_then_a_budgeted_edit(client: LanguageClient, folder: Path) -> None:
    exp = folder / "exp.bonsai.yaml"
    empty = await request(client, P.SCANS, {"file": exp.as_uri()})
    assert empty == {"folder": str(folder), "scans": []}

    out = await request(client, P.SCAN, {"file": exp.as_uri()})
    P.check(out, P.RunResult, "result")
    final = await job_end(client, out["jobId"], 120)
    assert final["state"] == "done", final
    assert final["message"] == "scan measured: 2 layers × 2 settings"

    reply = await request(client, P.SCANS, {"file": exp.as_uri()})
    P.check(reply, P.ScansResult, "result")
    (info,) = reply["scans"]
    assert info["experimentFile"] == "exp.bonsai.yaml"
    assert [u["name"] for u in info["result"]["units"]] == ["0", "2"]
    assert [s["label"] for s in info["result"]["spec"]["settings"]] == [
        "quantize.weights(bits=2, granularity=tensor)",
        "quantize.weights(bits=8, granularity=tensor)",
    ]
    assert (await request(client, P.SCANS, {"file": (folder / "plain.bonsai.yaml").as_uri()}))["scans"] == []

    scan = ScanResult.from_json(info["result"])
    budget = sum(scan.bytes[1][u] or 0 for u in range(2))  # 8-bit everywhere fits, 2-bit is not needed
    got = await request(
        client, P.SCAN_BUDGET, {"scan": info["id"], "maxBytes": budget, "name": "fit", "file": exp.as_uri()}
    )
    P.check(got, P.ScanBudgetResult, "result")
    want = under_size(scan, budget)
    assert got["choice"] == want.choice and got["feasible"] is True
    assert got["bytes"] == want.bytes and got["baseBytes"] == sum(scan.base_bytes)
    assert got["variant"] == variant_yaml(scan, want, "fit")
    # the edit: inserted after the last variant, before the blank line that ends the file
    old = exp.read_text()
    lines = old.splitlines(keepends=True)
    edit = got["edit"]
    assert (edit["line"], edit["character"]) == (
        old.splitlines().index("      - prune.magnitude: {sparsity: 0.1}") + 1,
        0,
    )
    applied = "".join(lines[: edit["line"]]) + edit["text"] + "".join(lines[edit["line"] :])
    assert applied == insert_variant(old, got["variant"])
    assert applied.endswith("{sparsity: 0.1}\n" + got["variant"] + "\n")

    # no recipe fits: the closest one, said plainly, and no edit
    tight = await request(client, P.SCAN_BUDGET, {"scan": info["id"], "maxBytes": 1, "file": exp.as_uri()})
    assert tight["feasible"] is False and "edit" not in tight
    assert tight["message"].startswith("no recipe stores the scanned weights in 1 bytes: the smallest takes ")
    # a name the file already has
    with pytest.raises(JsonRpcException) as e:
        await request(
            client, P.SCAN_BUDGET, {"scan": info["id"], "maxBytes": budget, "name": "a", "file": exp.as_uri()}
        )
    assert "already has a variant named a" in str(e.value)
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.SCAN_BUDGET, {"scan": "nope", "maxBytes": 10})
    assert e.value.code == P.NOT_FOUND


@pytest.mark.asyncio(loop_scope="module")
async def test_a_file_without_scan_says_what_to_add(client: LanguageClient, folder: Path) -> None:
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.SCAN, {"file": (folder / "plain.bonsai.yaml").as_uri()})
    assert e.value.code == P.USER_ERROR
    assert "plain.bonsai.yaml has no `scan:` section: add one, e.g.\nscan:\n  settings:" in str(e.value)


def test_insertion_finds_the_inserted_piece() -> None:
    assert insertion("ab\ncd\n", "ab\nxx\ncd\n") == (3, "xx\n")
    assert insertion("a\n", "a\nb\n") == (2, "b\n")
    # a piece that repeats the text after it: the first place they differ
    assert insertion("a\nc\n", "a\nc\nc\n") == (4, "c\n")
