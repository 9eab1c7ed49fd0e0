"""The language server over a plain PyTorch model: a lens over each function of a .py that returns
an nn.Module (read from the open text, nothing imported), the factories request, and the starter
it creates from a .py and from a .safetensors file (issue 19 item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from modelbonsai.experiment import load_experiment
from modelbonsai.lsp import protocol as P

from .helpers import request

MODEL = """\
import torch
from torch import nn


def block(width):
    return nn.Linear(width, width)


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def data():
    return torch.zeros(3)
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    (root / "net.py").write_text(MODEL)
    (root / "model").mkdir()
    from safetensors.torch import save_file
    from torch import nn

    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    save_file(
        {k: v.contiguous() for k, v in m.state_dict().items()}, str(root / "model" / "model.safetensors")
    )
    (root / "model" / "broken.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    return root


def _open(client: LanguageClient, path: Path, text: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    return uri


async def _lenses(client: LanguageClient, uri: str) -> list[tuple[int, str, str, list[object]]]:
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri)))
    out = []
    for le in lenses or []:
        assert le.command is not None
        out.append(
            (le.range.start.line, le.command.title, le.command.command, list(le.command.arguments or []))
        )
    return out


@pytest.mark.asyncio(loop_scope="module")
async def test_lens_over_each_model_function_of_the_open_text(client: LanguageClient, folder: Path) -> None:
    uri = _open(client, folder / "net.py", MODEL)
    # block(width) needs an argument: no lens; data() returns a tensor: no lens
    assert await _lenses(client, uri) == [
        (8, "$(add) Create experiment file for build()", P.CMD_CREATE_EXPERIMENT_FILE, [uri, "build"])
    ]
    # the lens follows the unsaved text, and a syntax error while typing leaves no lens, no error
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [lsp.TextDocumentContentChangeWholeDocument(text=MODEL + "\n\ndef make(:\n")],
        )
    )
    assert await _lenses(client, uri) == []
    other = _open(client, folder / "util.py", "def add(a, b):\n    return a + b\n")
    assert await _lenses(client, other) == []


@pytest.mark.asyncio(loop_scope="module")
async def test_factories_and_create_from_a_py(client: LanguageClient, folder: Path) -> None:
    found = await request(client, P.EXPERIMENT_FACTORIES, {"path": str(folder / "net.py")})
    P.check(found, P.FactoriesResult, "result")
    assert found == {
        "factories": [
            {
                "file": str(folder / "net.py"),
                "function": "block",
                "kind": "function",
                "line": 4,
                "required": ["width"],
            },
            {
                "file": str(folder / "net.py"),
                "function": "build",
                "kind": "function",
                "line": 8,
                "required": [],
            },
        ]
    }
    created = await request(
        client, P.EXPERIMENT_CREATE, {"configPath": str(folder / "net.py"), "function": "build"}
    )
    path = Path(created["path"])
    assert path == folder / "net.bonsai.yaml"
    assert "  name: net\n  load: net.py:build\n" in path.read_text()
    assert load_experiment(path).problems == []
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.EXPERIMENT_CREATE, {"configPath": str(folder / "net.py"), "function": "nope"})
    assert e.value.code == P.USER_ERROR
    assert (
        "net.py has no function 'nope' that returns an nn.Module (it has block(), build())" in e.value.message
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_factories_and_create_from_safetensors(client: LanguageClient, folder: Path) -> None:
    weights = folder / "model" / "model.safetensors"
    found = await request(client, P.EXPERIMENT_FACTORIES, {"path": str(weights)})
    assert [(f["file"], f["function"]) for f in found["factories"]] == [(str(folder / "net.py"), "build")]
    created = await request(client, P.EXPERIMENT_CREATE, {"configPath": str(weights)})
    path = Path(created["path"])
    assert path.parent == folder and path.name.endswith(".bonsai.yaml")
    assert "  load: model/model.safetensors\n  factory: net.py:build\n" in path.read_text()
    assert load_experiment(path).problems == []
    for params in ({"path": str(folder / "model" / "broken.safetensors")},):
        with pytest.raises(JsonRpcException) as e:
            await request(client, P.EXPERIMENT_FACTORIES, params)
        assert e.value.code == P.USER_ERROR
        assert e.value.message == "broken.safetensors is not a safetensors file: its header is not JSON"
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.EXPERIMENT_FACTORIES, {"path": str(folder / "missing.py")})
    assert e.value.code == P.NOT_FOUND
