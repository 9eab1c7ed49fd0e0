"""Columns at the LSP boundary: UTF-16 code units by default (an emoji is two), UTF-32 when the
client negotiates it; the conversion itself, and through a real server over stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from modelbonsai.experiment import Range
from modelbonsai.lsp.positions import Columns

from .helpers import server_config, start_session, until
from .workspace import EXPERIMENT, make_workspace

TREE = "\U0001f333"  # 🌳: one code point, two UTF-16 units, four UTF-8 bytes

# The shared experiment's header, and one variant whose line holds an emoji before the faulty
# value (sparsity 1.5 is out of range).
TEXT = (
    EXPERIMENT[: EXPERIMENT.index("  - name:")]
    + f"""\
  - name: prune-50
    from: base
    ops:
      - prune.magnitude: {{include: ["{TREE}{TREE}.*"], sparsity: 1.5}}  # {TREE}
"""
)
LINE = len(TEXT.splitlines()) - 1
CP = TEXT.splitlines()[LINE].index("1.5")  # code points: what the parser counts


def test_columns_convert_both_ways() -> None:
    text = f'a: "{TREE}x" 1.5\r\nb: {TREE}\rc'
    utf16 = Columns(text)
    assert utf16.lines == [f'a: "{TREE}x" 1.5', f"b: {TREE}", "c"]  # \r\n, \r and \n break lines
    assert utf16.to_client(0, 6) == 7 and utf16.from_client(0, 7) == 6  # 'x' is after the pair
    assert utf16.from_client(0, 5) == 4  # inside the surrogate pair: the emoji itself
    assert utf16.to_client(2, 1) == 1 and utf16.to_client(9, 3) == 3  # ASCII and missing lines
    r = utf16.range(Range(0, 8, 0, 11))
    assert (r.start.character, r.end.character) == (9, 12)
    utf8 = Columns(text, "utf-8")
    assert utf8.to_client(0, 6) == 9 and utf8.from_client(0, 9) == 6 and utf8.from_client(0, 6) == 4
    utf32 = Columns(text, "utf-32")
    assert utf32.to_client(0, 6) == 6 and utf32.from_client(0, 6) == 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("positions")
    make_workspace(root, TEXT)
    return root


def _open(client: LanguageClient, path: Path) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=TEXT))
    )
    return uri


async def _out_of_range(client: LanguageClient, uri: str) -> lsp.Diagnostic:
    await until(lambda: client.diagnostics.get(uri), 20, "diagnostics")
    (d,) = [d for d in client.diagnostics[uri] if d.code == "out-of-range"]
    return d


@pytest_lsp.fixture(config=server_config())
async def client(lsp_client: LanguageClient, folder: Path):
    result = await start_session(
        lsp_client, folder, folder / "storage", trusted=False
    )  # VS Code offers no encoding: UTF-16
    assert result.capabilities.position_encoding in (None, lsp.PositionEncodingKind.Utf16)
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_utf16_columns_after_an_emoji(client: LanguageClient, folder: Path) -> None:
    uri = _open(client, folder / "exp.bonsai.yaml")
    d = await _out_of_range(client, uri)
    # two emoji before the value: two extra UTF-16 units each
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (LINE, CP + 2, CP + 5)
    # a position coming in is read in UTF-16 units too: the hover on "sparsity" is found, and
    # its range goes back in UTF-16 units
    word = TEXT.splitlines()[LINE].index("sparsity")
    h = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(LINE, word + 2 + len("sparsity") - 1))
    )
    assert h is not None and "sparsity" in h.contents.value
    assert h.range is not None and h.range.start.character == word + 2


@pytest_lsp.fixture(config=server_config())
async def utf32_client(lsp_client: LanguageClient, folder: Path):
    result = await start_session(
        lsp_client, folder, folder / "storage", trusted=False, encodings=["utf-32", "utf-16"]
    )
    assert result.capabilities.position_encoding == lsp.PositionEncodingKind.Utf32
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_utf32_when_the_client_offers_it(utf32_client: LanguageClient, folder: Path) -> None:
    uri = _open(utf32_client, folder / "exp.bonsai.yaml")
    d = await _out_of_range(utf32_client, uri)
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (LINE, CP, CP + 3)
