"""Language features over stdio: diagnostics (exact ranges, debounced, lazy pattern checks),
completion, hover, go-to-definition, CodeLens before and after a run, config.json lenses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from modelbonsai.lsp import protocol as P
from support.locate import position_of, range_of
from support.workspace import experiment_head

from .helpers import job_end, request, until
from .workspace import make_hf_model, make_workspace

# Positions below are found by their token in the text (support/locate.py), not written as numbers.
TEXT = (
    experiment_head("my_ops.py")
    + """\
  - name: prune-50
    from: base
    ops:
      - prune.magnitude: {sparsity: 0.5, include: ["0.*"]}
  - name: int8
    from: prune-50
    ops:
      - quantize.weights: {bits: 8}
  - name: masked
    from: base
    ops:
      - prune.magnitude: {sparsity: 0.3, exclude: ["*.bias", "*.nomatch"]}
  - name: "q{bits}"
    from: "prune-50"
    ops:
      - quantize.weights: {bits: [6, 4]}
"""
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lang")
    make_workspace(root, TEXT)
    make_hf_model(root / "hf-model")
    return root


def _open(client: LanguageClient, path: Path, text: str, language: str = "yaml") -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )
    return uri


def _change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [lsp.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def _rng(d: lsp.Diagnostic) -> tuple[int, int, int, int]:
    r = d.range
    return (r.start.line, r.start.character, r.end.line, r.end.character)


@pytest.mark.asyncio(loop_scope="module")
async def test_diagnostics_exact_ranges_debounced_and_lazy_patterns(
    client: LanguageClient, folder: Path
) -> None:
    path = folder / "exp.bonsai.yaml"
    uri = _open(client, path, TEXT)
    # The valid file: once the base's parameter names are loaded (in the background), the
    # pattern that matches nothing gets a warning at the pattern itself.
    await until(lambda: client.diagnostics.get(uri), 30, "the lazy pattern check")
    (warning,) = client.diagnostics[uri]
    assert warning.severity == lsp.DiagnosticSeverity.Warning and warning.code == "pattern-no-match"
    assert _rng(warning) == range_of(TEXT, '"*.nomatch"')

    # Typing: three quick edits give one diagnostics run, for the last text, ~300 ms later.
    broken = TEXT.replace("sparsity: 0.5", "sparsity: 1.5").replace("from: prune-50", "from: prune-5O")
    broken = broken.replace("quantize.weights", "quantize.wieghts", 1)
    published: list[int | None] = []
    orig = client.diagnostics

    _change(client, uri, 2, broken.replace("1.5", "1.2"))
    _change(client, uri, 3, broken.replace("1.5", "1.3"))
    _change(client, uri, 4, broken)
    await until(lambda: len(client.diagnostics.get(uri, [])) >= 3, 10, "diagnostics of the broken text")
    assert client.diagnostics is orig
    published.append(4)
    diags = sorted(client.diagnostics[uri], key=_rng)
    by_code = {d.code: d for d in diags}
    assert _rng(by_code["out-of-range"]) == range_of(broken, "1.5")
    assert "'sparsity' must be < 1, got 1.5" in by_code["out-of-range"].message
    assert _rng(by_code["unknown-parent"]) == range_of(broken, "prune-5O")
    assert "did you mean 'prune-50'" in by_code["unknown-parent"].message
    assert _rng(by_code["unknown-op"]) == range_of(broken, "quantize.wieghts")
    assert all(
        d.severity == lsp.DiagnosticSeverity.Error for d in by_code.values() if d.code != "pattern-no-match"
    )

    # Back to the valid text: the errors go away.
    _change(client, uri, 5, TEXT)
    await until(lambda: len(client.diagnostics.get(uri, [])) == 1, 10, "errors to clear")


@pytest.mark.asyncio(loop_scope="module")
async def test_completion_of_ops_and_params(client: LanguageClient, folder: Path) -> None:
    path = folder / "complete.bonsai.yaml"
    text = TEXT.replace("      - quantize.weights: {bits: 8}", "      - quantize.")
    uri = _open(client, path, text)
    result = await client.text_document_completion_async(
        lsp.CompletionParams(
            lsp.TextDocumentIdentifier(uri), position_of(text, "quantize.\n", offset=len("quantize."))
        )
    )
    labels = {i.label: i for i in result.items}
    assert "quantize.weights" in labels and "prune.magnitude" in labels
    doc = labels["quantize.weights"].documentation
    assert isinstance(doc, lsp.MarkupContent) and "bits" in doc.value

    text2 = TEXT.replace("{sparsity: 0.5, include", "{sparsity: 0.5, sc: 1, include")
    uri2 = _open(client, folder / "complete2.bonsai.yaml", text2)
    result = await client.text_document_completion_async(
        lsp.CompletionParams(lsp.TextDocumentIdentifier(uri2), position_of(text2, "sc: 1", offset=len("sc")))
    )
    labels = {i.label: i for i in result.items}
    assert "scope" in labels and "exclude" in labels
    assert "sparsity" not in labels  # already given
    assert labels["scope"].documentation is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_hover_op_param_and_pattern(client: LanguageClient, folder: Path) -> None:
    uri = (folder / "exp.bonsai.yaml").as_uri()
    h = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(TEXT, "prune.magnitude", offset=3))
    )
    assert h is not None and "prune.magnitude" in h.contents.value and "sparsity" in h.contents.value
    h = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(TEXT, "sparsity: 0.5", offset=2))
    )
    assert h is not None and "sparsity" in h.contents.value
    h = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(TEXT, '"0.*"', offset=2))
    )
    assert h is not None
    assert "Matches **2** of 4 base parameters" in h.contents.value, h.contents.value
    assert "`0.weight`" in h.contents.value and "`0.bias`" in h.contents.value
    h = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), position_of(TEXT, "nomatch"))
    )
    assert h is not None and "Matches **no** parameter" in h.contents.value


@pytest.mark.asyncio(loop_scope="module")
async def test_definition_from_parent_name(client: LanguageClient, folder: Path) -> None:
    uri = (folder / "exp.bonsai.yaml").as_uri()
    # from the middle of int8's parent name to prune-50's name (its first occurrence)
    loc = await client.text_document_definition_async(
        lsp.DefinitionParams(
            lsp.TextDocumentIdentifier(uri), position_of(TEXT, "from: prune-50", offset=len("from: pru"))
        )
    )
    assert isinstance(loc, lsp.Location) and loc.uri == uri
    r = loc.range
    assert (r.start.line, r.start.character, r.end.line, r.end.character) == range_of(TEXT, "prune-50")
    nothing = await client.text_document_definition_async(
        lsp.DefinitionParams(lsp.TextDocumentIdentifier(uri), position_of(TEXT, "seed:", offset=1))
    )
    assert nothing is None


def _titles(lenses: list[lsp.CodeLens], line: int) -> list[str]:
    return [lens.command.title for lens in lenses if lens.range.start.line == line and lens.command]


def _points(x: float) -> str:
    return "±0" if f"{abs(x):.1f}" == "0.0" else ("+" if x > 0 else "\u2212") + f"{abs(x):.1f}"


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{int(n)} B"


@pytest.mark.asyncio(loop_scope="module")
async def test_code_lens_before_and_after_a_run(client: LanguageClient, folder: Path) -> None:
    path = folder / "exp.bonsai.yaml"
    uri = path.as_uri()
    lines = {name: position_of(TEXT, f"- name: {name}\n").line for name in ("prune-50", "int8")}
    sweep_line = position_of(TEXT, '- name: "q{bits}"').line
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri)))
    assert _titles(lenses, lines["prune-50"]) == ["▶ Run", "Compare with parent", "Show in Model Map"]
    assert _titles(lenses, lines["int8"]) == ["▶ Run", "Compare with parent", "Show in Model Map"]
    assert _titles(lenses, sweep_line) == ["▶ Run", "Compare with parent", "Show in Model Map"]
    run = next(le for le in lenses if le.range.start.line == lines["int8"] and le.command.title == "▶ Run")
    assert run.command.command == P.CMD_RUN_VARIANT and list(run.command.arguments) == [uri, "int8"]

    variants = ["int8", "q6", "q4"]
    job = (await request(client, P.RUN, {"file": uri, "variants": variants}))["jobId"]
    final = await job_end(client, job, 90)
    assert final["state"] == "done", {k: final.get(k) for k in ("state", "error", "message", "detail")}
    await until(lambda: client.lens_refreshes, 10, "a CodeLens refresh")  # type: ignore[attr-defined]
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri)))
    reply = await request(client, P.LINEAGE, {})
    lineage = {m["name"]: m for m in reply["models"]}
    assert reply["metrics"]["accuracy"]["name"] == "accuracy"  # the metric keys are their names
    base = next(m for m in lineage.values() if m["parent"] is None)

    def expect(name: str) -> str:
        """The lens text from the lineage's figures: each change against the parent, and against
        the base too when the parent is not the base."""
        model = lineage[name]
        parent = next(m for m in lineage.values() if m["id"] == model["parent"])
        acc, size = model["metrics"]["accuracy"], model["metrics"]["stored_size"]
        refs = [("base", parent)] if parent is base else [("parent", parent), ("base", base)]
        accs = ", ".join(f"{_points(100 * (acc - r['metrics']['accuracy']))} pt vs {who}" for who, r in refs)
        sizes = ", ".join(f"{r['metrics']['stored_size'] / size:.2f}× vs {who}" for who, r in refs)
        return f"acc {100 * acc:.1f}% ({accs}) · {_kib(size)} ({sizes})"

    for name, line in lines.items():
        titles = _titles(lenses, line)
        assert len(titles) == 4, titles
        assert titles[3].startswith(expect(name)), (titles[3], expect(name))  # then latency
    # int8 was made from prune-50, not from the base: it says both
    assert " vs parent, " in _titles(lenses, lines["int8"])[3]
    assert " vs parent" not in _titles(lenses, lines["prune-50"])[3]

    # The sweep: one summary lens (not one lens per model on one line), whose command lists every
    # model with its own line of metrics.
    (summary,) = [
        le for le in lenses if le.range.start.line == sweep_line and le.command.command == P.CMD_SHOW_SWEEP
    ]
    assert _titles(lenses, sweep_line)[:3] == ["▶ Run", "Compare with parent", "Show in Model Map"]
    assert len(_titles(lenses, sweep_line)) == 4
    accs = sorted(100 * lineage[n]["metrics"]["accuracy"] for n in ("q6", "q4"))
    span = f"{accs[0]:.1f}" if f"{accs[0]:.1f}" == f"{accs[1]:.1f}" else f"{accs[0]:.1f}–{accs[1]:.1f}"
    assert summary.command.title.startswith(f"2 models · acc {span}% · "), summary.command.title
    assert summary.command.title.endswith(" · show all")
    file_arg, declared, rows = summary.command.arguments
    assert (file_arg, declared) == (uri, "q{bits}")
    assert [r["name"] for r in rows] == ["q6", "q4"]
    for r in rows:
        assert r["title"].startswith(expect(r["name"])), (r["title"], expect(r["name"]))
        assert " vs parent, " in r["title"] and " vs base)" in r["title"]


@pytest.mark.asyncio(loop_scope="module")
async def test_config_json_lenses_and_create_experiment(client: LanguageClient, folder: Path) -> None:
    config = folder / "hf-model" / "config.json"
    uri = _open(client, config, config.read_text(), "json")
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri)))
    assert [(le.command.title, le.command.command, list(le.command.arguments)) for le in lenses] == [
        ("$(add) Create experiment file", P.CMD_CREATE_EXPERIMENT_FILE, [uri]),
        ("$(search) Inspect model", P.CMD_INSPECT_MODEL, [uri]),
    ]
    lone = folder / "lone" / "config.json"  # no weights beside it: no lenses
    lone.parent.mkdir()
    lone.write_text("{}")
    uri2 = _open(client, lone, "{}", "json")
    assert not await client.text_document_code_lens_async(
        lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri2))
    )

    created = await request(client, P.EXPERIMENT_CREATE, {"configPath": str(config)})
    P.check(created, P.PathResult, "result")
    path = Path(created["path"])
    assert path.name.endswith(".bonsai.yaml") and path.is_file()
    starter_uri = _open(client, path, path.read_text())
    await asyncio.sleep(0.5)
    await until(lambda: starter_uri in client.diagnostics, 10, "diagnostics of the starter")
    errors = [d for d in client.diagnostics[starter_uri] if d.severity == lsp.DiagnosticSeverity.Error]
    assert errors == [], "the starter experiment validates"


@pytest.mark.asyncio(loop_scope="module")
async def test_code_lenses_stay_on_the_variants_an_error_does_not_touch(
    client: LanguageClient, folder: Path
) -> None:
    """An unclosed brace in int8 while typing: the file is not YAML, and still every other variant
    keeps its lenses on its line (int8's go until the brace is closed)."""
    path = folder / "exp.bonsai.yaml"
    uri = path.as_uri()
    broken = TEXT.replace("      - quantize.weights: {bits: 8}", "      - quantize.weights: {bits: 8")
    _change(client, uri, 50, broken)
    await until(
        lambda: any(d.code == "yaml-syntax" for d in client.diagnostics.get(uri, [])), 10, "the syntax error"
    )
    assert [d.code for d in client.diagnostics[uri]] == ["yaml-syntax"]
    lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(lsp.TextDocumentIdentifier(uri)))
    for name in ("prune-50", "masked"):
        assert _titles(lenses, position_of(broken, f"- name: {name}\n").line)[:3] == [
            "▶ Run",
            "Compare with parent",
            "Show in Model Map",
        ]
    assert _titles(lenses, position_of(broken, "- name: int8\n").line) == []
    _change(client, uri, 51, TEXT)
    await until(
        lambda: not any(d.code == "yaml-syntax" for d in client.diagnostics.get(uri, [])), 10, "the fix"
    )
