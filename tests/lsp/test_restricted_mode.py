"""Restricted Mode (an untrusted workspace): no editor feature runs the workspace's code.

The workspace is full of booby traps: every Python file it names (`load:`, `factory:`,
`ops_from:`, user tasks by relative and absolute path, a `pkg.module:function` load) and every
pickle checkpoint (a `.pt` file, a Hugging Face folder with only `pytorch_model.bin`) leaves a
marker file when it is imported or unpickled. The server is started untrusted and every
language feature is asked everywhere in every file: diagnostics (open and edit), hover,
completion and go-to-definition at every column of every line, CodeLens (experiment files and
config.json), the lineage, and the starter experiment for the Hugging Face folder. No marker
may appear.

The server is started as VS Code started it before it moved the server out of the workspace:
`python -m modelbonsai.cli serve` in the workspace folder, which puts the folder first on
sys.path. So the workspace also holds files named like modules the server imports only once a
feature needs them (yaml, difflib, numpy, PIL, safetensors): they must not be the ones imported.
"""

from __future__ import annotations

import asyncio
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from modelbonsai.lsp import protocol as P

from .helpers import SERVER_ENV, request, start_session, until, watch

# Each trap writes MARKER-<its name> beside itself when its code runs.
_TRAP = (
    "from pathlib import Path\nPath(__file__).with_name('MARKER-' + Path(__file__).stem).write_text('ran')\n"
)
_TRAP_TASK = _TRAP + '\nclass EvilTask:\n    """A task that must not be imported by the editor."""\n'
_TRAP_BUILD = _TRAP + "\ndef build():\n    return None\n"
_TRAP_OPS = _TRAP + (
    "from modelbonsai.ops.registry import register_op\n\n"
    "@register_op('evil.op', family='user', summary='x', source='user')\n"
    "def op(cm, params, ctx):\n    return cm\n"
)


# Fixed before the server's command is: the server starts in it.
_ROOT = Path(tempfile.mkdtemp(prefix="bonsai-restricted-"))
_CONFIG = ClientServerConfig(
    server_command=["sh", "-c", 'cd "$0" && exec "$1" -m modelbonsai.cli serve', str(_ROOT), sys.executable],
    server_env=SERVER_ENV,
)
#: Modules the server imports after it started (on the first diagnostics, hover, ...).
_LATE_IMPORTS = ("yaml", "difflib", "safetensors", "PIL")


class _Opens:
    """A pickle that creates a marker file when it is unpickled (as any callable could be run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _experiments(outside: Path) -> dict[str, str]:
    return {
        "files.bonsai.yaml": """\
ops_from: [evil_ops.py]
base:
  name: toy
  load: evil_model.py:build
  factory: evil_factory.py:build
task:
  kind: evil_task.py:EvilTask
  data: data
variants:
  - name: a
    from: base
    ops:
      - evil.op: {x: 1}
      - prune.magnitude: {sparsity: 0.5, include: ["*.weight"]}
  - name: b
    from: a
    ops:
      - quantize.weights: {bits: 8}
""",
        "absolute.bonsai.yaml": f"""\
base:
  load: weights/model.pt
  factory: {outside / "evil_far_factory.py"}:build
task:
  kind: {outside / "evil_far_task.py"}:EvilTask
variants:
  - name: a
    ops:
      - prune.magnitude: {{sparsity: 0.5, exclude: ["*bias"]}}
""",
        "pickle.bonsai.yaml": """\
base:
  load: hf
task:
  kind: evilpkg.evil_mod:EvilTask
variants:
  - name: p
    ops:
      - prune.magnitude: {sparsity: [0.3, 0.5], include: "*"}
""",
        "module.bonsai.yaml": """\
base:
  load: evilpkg.evil_mod:build
  factory: evilpkg.evil_mod:build
  args: {hidden: 8}
variants:
  - name: m
    ops:
      - prune.magnitude: {sparsity: 0.5}
""",
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = _ROOT
    outside = tmp_path_factory.mktemp("elsewhere")  # reached only by absolute paths
    for name in _LATE_IMPORTS:
        (root / f"{name}.py").write_text(_TRAP)
    (root / "numpy").mkdir()
    (root / "numpy" / "__init__.py").write_text(_TRAP)
    for name in ("evil_model", "evil_factory"):
        (root / f"{name}.py").write_text(_TRAP_BUILD)
    (root / "evil_task.py").write_text(_TRAP_TASK)
    (root / "evil_ops.py").write_text(_TRAP_OPS)
    (outside / "evil_far_factory.py").write_text(_TRAP_BUILD)
    (outside / "evil_far_task.py").write_text(_TRAP_TASK)
    (root / "evilpkg").mkdir()
    (root / "evilpkg" / "__init__.py").write_text(_TRAP)
    (root / "evilpkg" / "evil_mod.py").write_text(_TRAP_BUILD + _TRAP_TASK)
    (root / "data").mkdir()
    (root / "weights").mkdir()
    (root / "weights" / "model.pt").write_bytes(pickle.dumps(_Opens(root / "weights" / "MARKER-model-pt")))
    (root / "hf").mkdir()
    (root / "hf" / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    (root / "hf" / "pytorch_model.bin").write_bytes(
        pickle.dumps(_Opens(root / "hf" / "MARKER-pytorch-model"))
    )
    for name, text in _experiments(outside).items():
        (root / name).write_text(text)
    root.joinpath("outside.txt").write_text(str(outside))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest_lsp.fixture(config=_CONFIG, scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage", trusted=False)
    yield
    await lsp_client.shutdown_session()


def _markers(folder: Path) -> list[Path]:
    outside = Path(folder.joinpath("outside.txt").read_text())
    return sorted([*folder.rglob("MARKER-*"), *outside.rglob("MARKER-*")])


def _positions(text: str) -> list[lsp.Position]:
    """Every column of every line (and the end of each line, and one line past the end)."""
    lines = text.split("\n")
    return [lsp.Position(i, c) for i, line in enumerate(lines) for c in range(len(line) + 1)] + [
        lsp.Position(len(lines), 0)
    ]


@pytest.mark.asyncio(loop_scope="module")
async def test_no_feature_runs_workspace_code_untrusted(client: LanguageClient, folder: Path) -> None:
    # Restricted Mode really is on: a run is refused.
    with pytest.raises(JsonRpcException) as e:
        await request(client, P.RUN, {"file": str(folder / "files.bonsai.yaml")})
    assert e.value.code == P.WORKSPACE_UNTRUSTED

    files = sorted(folder.glob("*.bonsai.yaml"))
    for path in files:
        uri, text = path.as_uri(), path.read_text()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=text)
            )
        )
        await until(lambda uri=uri: uri in client.diagnostics, 30, f"diagnostics of {path.name}")
        doc = lsp.TextDocumentIdentifier(uri=uri)
        # Hover, completion and definition everywhere, a line's worth at a time.
        positions = _positions(text)
        for start in range(0, len(positions), 64):
            batch = positions[start : start + 64]
            await asyncio.gather(
                *(client.text_document_hover_async(lsp.HoverParams(doc, p)) for p in batch),
                *(client.text_document_completion_async(lsp.CompletionParams(doc, p)) for p in batch),
                *(client.text_document_definition_async(lsp.DefinitionParams(doc, p)) for p in batch),
            )
        await client.text_document_code_lens_async(lsp.CodeLensParams(doc))
        # An edit (diagnostics again, after the debounce), then the features on the edited text.
        edited = text.replace("prune.magnitude", "prune.magnitud")
        del client.diagnostics[uri]
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
                [lsp.TextDocumentContentChangeWholeDocument(text=edited)],
            )
        )
        await until(lambda uri=uri: uri in client.diagnostics, 30, f"diagnostics of edited {path.name}")
        await client.text_document_code_lens_async(lsp.CodeLensParams(doc))
    assert _markers(folder) == []

    # The user task's hover says what the task is, read from its file (not imported).
    files_text = (folder / "files.bonsai.yaml").read_text()
    kind_line = files_text.split("\n").index("  kind: evil_task.py:EvilTask")
    hover = await client.text_document_hover_async(
        lsp.HoverParams(
            lsp.TextDocumentIdentifier(uri=(folder / "files.bonsai.yaml").as_uri()),
            lsp.Position(kind_line, 12),
        )
    )
    assert hover is not None and "must not be imported by the editor" in hover.contents.value

    # config.json: its lenses, and the starter experiment they offer.
    config = folder / "hf" / "config.json"
    await client.text_document_code_lens_async(
        lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri=config.as_uri()))
    )
    created = await request(client, P.EXPERIMENT_CREATE, {"configPath": str(config)})
    assert Path(created["path"]).is_file()
    await request(client, P.LINEAGE, {})

    # Background work (base parameter names, lineage) would have had its chance by now.
    await asyncio.sleep(1.0)
    assert _markers(folder) == []


@pytest.mark.asyncio(loop_scope="module")
async def test_fuzzed_documents_through_the_server(client: LanguageClient, folder: Path) -> None:
    """Fuzzed sample files (tests/support/fuzz.py) opened in the server: diagnostics come, each at
    its place and none internal, and the position features answer without an error."""
    import random

    from support.fuzz import cases

    rng = random.Random(3)
    for i, (_sample, text) in enumerate(cases(24, seed=11)):
        uri = (folder / f"fuzz{i}.bonsai.yaml").as_uri()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=text)
            )
        )
        await until(lambda uri=uri: uri in client.diagnostics, 30, f"diagnostics of fuzz case {i}")
        for d in client.diagnostics[uri]:
            r = d.range
            unplaced = (r.start.line, r.start.character, r.end.line, r.end.character) == (0, 0, 0, 0)
            assert d.code != "internal" and (not unplaced or "file is empty" in d.message), (i, d)
        doc = lsp.TextDocumentIdentifier(uri=uri)
        lines = text.split("\n")
        for _ in range(4):
            line = rng.randrange(len(lines))
            p = lsp.Position(line, rng.randrange(len(lines[line].encode("utf-16-le")) // 2 + 1))
            await client.text_document_hover_async(lsp.HoverParams(doc, p))
            await client.text_document_completion_async(lsp.CompletionParams(doc, p))
            await client.text_document_definition_async(lsp.DefinitionParams(doc, p))
        await client.text_document_code_lens_async(lsp.CodeLensParams(doc))
    assert _markers(folder) == []
