"""Language features: *.bonsai.yaml (diagnostics, completion, hover, CodeLens, definition),
CodeLens on a Hugging Face config.json and over the model functions of a Python file.

The experiment package does the understanding (parse with positions, what is at a cursor);
this module turns it into LSP, debounces diagnostics while the user types, and adds what needs
the server: the base model's parameter names (loaded in the background, trusted workspaces
only, cached by base spec) for pattern checks and pattern hovers, and the lineage for the
metrics lens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.uris import to_fs_path

from ..experiment import ParseResult, Problem, parse_experiment
from . import protocol as P
from .lens import lineage_base, metrics_lens_title, noisy_note, sweep_summary
from .positions import Columns

if TYPE_CHECKING:
    from .server import BonsaiServer

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.3
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SEVERITY = {
    "error": lsp.DiagnosticSeverity.Error,
    "warning": lsp.DiagnosticSeverity.Warning,
    "info": lsp.DiagnosticSeverity.Information,
}


def is_experiment(uri: str) -> bool:
    return uri.endswith(P.EXPERIMENT_SUFFIX)


def is_hf_config(path: Path) -> bool:
    """A config.json with model weights beside it."""
    if path.name != "config.json":
        return False
    try:
        return any(p.suffix in _WEIGHT_SUFFIXES and p.is_file() for p in path.parent.iterdir())
    except OSError:
        return False


def uri_path(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri)


def columns(server: BonsaiServer, text: str) -> Columns:
    """The column converter for `text` in the encoding negotiated with this client."""
    encoding = server.workspace.position_encoding
    return Columns(text, str(getattr(encoding, "value", encoding) or "utf-16"))


@dataclass
class _At:
    """Where a position request points in an experiment document: its text, the column
    converter, and the position as (line, code-point column)."""

    uri: str
    text: str
    cols: Columns
    line: int
    col: int


def _experiment_at(
    server: BonsaiServer, params: lsp.CompletionParams | lsp.HoverParams | lsp.DefinitionParams
) -> _At | None:
    """The request's place, or None when the document is not an experiment file."""
    uri = params.text_document.uri
    if not is_experiment(uri):
        return None
    text = server.workspace.get_text_document(uri).source
    cols = columns(server, text)
    line, col = cols.position(params.position)
    return _At(uri, text, cols, line, col)


# ---------------------------------------------------------------------------------------------
# Base parameter names (for pattern checks and hovers)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Names:
    names: list[str] | None = None
    error: str | None = None
    waiting: set[str] = field(default_factory=set)  # document URIs to re-check once loaded


class BaseNames:
    """Parameter names of base models, by base spec; loaded once each, in one background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, _Names] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bonsai-base-names")

    @staticmethod
    def key(result: ParseResult) -> tuple[str, Any, Path] | None:
        exp = result.experiment or result.partial
        if exp is None or exp.base is None or not exp.base.load:
            return None
        from ..fingerprints import base_fingerprint, spec_to_dict

        spec = spec_to_dict(exp.base)
        try:
            fp = base_fingerprint(spec, exp.root)  # changes when the weight files change
        except Exception:
            return None
        return fp, spec, exp.root

    def get(self, key: str) -> _Names | None:
        with self._lock:
            return self._by_key.get(key)

    def request(self, key: tuple[str, Any, Path], uri: str, done: Any) -> _Names:
        """The names for `key` if known; else start loading them and call done(uri) later."""
        fp, spec, root = key
        with self._lock:
            entry = self._by_key.get(fp)
            if entry is not None:
                if entry.names is None and entry.error is None:
                    entry.waiting.add(uri)
                return entry
            entry = self._by_key[fp] = _Names(waiting={uri})
        self._pool.submit(self._load, fp, spec, root, done)
        return entry

    def _load(self, fp: str, spec: Any, root: Path, done: Any) -> None:
        from ..load import load_skeleton

        try:
            module = load_skeleton(spec, root)
            names = [n for n, _ in module.named_parameters()]
            error = None
        except Exception as e:  # a base that does not load is reported by the run, not here
            names, error = None, str(e)
            log.info("could not list the parameters of base %s: %s", spec.get("load"), e)
        with self._lock:
            entry = self._by_key[fp]
            entry.names, entry.error = names, error
            waiting, entry.waiting = entry.waiting, set()
        for uri in waiting:
            done(uri)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Per-document state and diagnostics
# ---------------------------------------------------------------------------------------------
@dataclass
class DocState:
    uri: str
    version: int | None = None
    result: ParseResult | None = None
    text: str = ""  # what `result` was parsed from: its ranges' columns count in this text
    pending: asyncio.TimerHandle | None = None
    generation: int = 0


class Documents:
    def __init__(self, server: BonsaiServer):
        self.server = server
        self.states: dict[str, DocState] = {}
        self.names = BaseNames()

    def state(self, uri: str) -> DocState:
        st = self.states.get(uri)
        if st is None:
            st = self.states[uri] = DocState(uri)
        return st

    def schedule(self, uri: str, delay: float) -> None:
        st = self.state(uri)
        st.generation += 1
        if st.pending is not None:
            st.pending.cancel()
        loop = asyncio.get_running_loop()
        gen = st.generation
        st.pending = loop.call_later(delay, lambda: asyncio.ensure_future(self.check(uri, gen)))

    async def parse(self, uri: str) -> ParseResult | None:
        doc = self.server.workspace.get_text_document(uri)
        text, version = doc.source, doc.version
        result = await self.server.in_reader(parse_experiment, text, uri_path(uri))
        st = self.state(uri)
        st.result, st.version, st.text = result, version, text
        return result

    async def check(self, uri: str, generation: int | None = None) -> None:
        st = self.state(uri)
        if generation is not None and generation != st.generation:
            return  # a newer edit is pending
        try:
            result = await self.parse(uri)
        except Exception:
            log.exception("parsing %s failed", uri)
            return
        if result is None or (generation is not None and generation != st.generation):
            return
        self.publish(uri, result)

    def publish(self, uri: str, result: ParseResult) -> None:
        problems: list[Problem] = list(result.problems)
        problems += self.pattern_problems(uri, result)
        cols = columns(self.server, self.state(uri).text)
        diagnostics = [
            lsp.Diagnostic(
                range=cols.range(p.range),
                message=p.message,
                severity=_SEVERITY.get(p.severity, lsp.DiagnosticSeverity.Error),
                code=p.code or None,
                source="bonsai",
            )
            for p in problems
        ]
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=self.state(uri).version)
        )

    def pattern_problems(self, uri: str, result: ParseResult) -> list[Problem]:
        """Patterns matching no base parameter, once the names are known (trusted only)."""
        exp = result.experiment
        if exp is None or not self.server.settings.trusted:
            return []
        key = BaseNames.key(result)
        if key is None:
            return []
        entry = self.names.request(key, uri, self._names_loaded)
        if entry.names is None:
            return []
        from ..experiment.patterns import check_patterns

        return check_patterns(exp, entry.names)

    def _names_loaded(self, uri: str) -> None:
        def again() -> None:
            st = self.states.get(uri)
            if st is not None and st.result is not None:
                self.publish(uri, st.result)

        self.server.on_loop(again)

    async def result(self, uri: str) -> ParseResult | None:
        """The parse of the current text (parsing now if an edit is still pending)."""
        st = self.state(uri)
        doc = self.server.workspace.get_text_document(uri)
        if st.result is None or st.version != doc.version:
            return await self.parse(uri)
        return st.result

    def param_names(self, result: ParseResult) -> tuple[list[str] | None, str]:
        """Base parameter names if known, else a note why not."""
        if not self.server.settings.trusted:
            return None, "Workspace Trust is required to load the base model and list its parameters."
        key = BaseNames.key(result)
        if key is None:
            return None, "The base model is not specified yet."
        entry = self.names.get(key[0])
        if entry is None or (entry.names is None and entry.error is None):
            if entry is None:
                self.names.request(key, "", lambda uri: None)
            return None, "Loading the base model's parameter names…"
        if entry.names is None:
            return None, f"The base model could not be loaded: {entry.error}"
        return entry.names, ""


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
_COMPLETION_KIND = {
    "op": lsp.CompletionItemKind.Function,
    "param": lsp.CompletionItemKind.Property,
    "key": lsp.CompletionItemKind.Field,
    "variant": lsp.CompletionItemKind.Reference,
    "value": lsp.CompletionItemKind.Value,
}


def register(server: BonsaiServer) -> None:
    docs = Documents(server)
    server.documents = docs

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        if is_experiment(params.text_document.uri):
            docs.state(params.text_document.uri)
            await docs.check(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        if is_experiment(params.text_document.uri):
            docs.schedule(params.text_document.uri, DEBOUNCE_S)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: lsp.DidSaveTextDocumentParams) -> None:
        # A saved edit can make stored models stale (or a failed variant mended): tell the views,
        # which otherwise learn it only on their next lineage request.
        uri = params.text_document.uri
        if is_experiment(uri):
            path = uri_path(uri).resolve()
            server.lineage_changed(server.folder_for(file=path))

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        st = docs.states.pop(params.text_document.uri, None)
        if st is not None and st.pending is not None:
            st.pending.cancel()
        if is_experiment(params.text_document.uri):
            server.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
            )

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[":", " ", "-", ".", "{", ","])
    )
    async def completion(params: lsp.CompletionParams) -> lsp.CompletionList | None:
        at = _experiment_at(server, params)
        if at is None:
            return None
        from ..experiment.document import completions_at

        cols = at.cols
        items = await server.in_reader(completions_at, at.text, at.line, at.col, uri_path(at.uri))
        out = []
        for i, it in enumerate(items):
            item = lsp.CompletionItem(
                label=it.label,
                kind=_COMPLETION_KIND.get(it.kind, lsp.CompletionItemKind.Text),
                detail=it.detail or None,
                documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, it.documentation)
                if it.documentation
                else None,
                sort_text=f"{i:04d}",
            )
            insert = it.insert_text if it.insert_text is not None else it.label
            if it.range is not None:
                item.text_edit = lsp.TextEdit(cols.range(it.range), insert)
            else:
                item.insert_text = insert
            out.append(item)
        return lsp.CompletionList(is_incomplete=False, items=out)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    async def hover(params: lsp.HoverParams) -> lsp.Hover | None:
        at = _experiment_at(server, params)
        if at is None:
            return None
        from ..experiment.document import hover_at, pattern_matches

        h = await server.in_reader(hover_at, at.text, at.line, at.col, uri_path(at.uri))
        if h is None:
            return None
        markdown = h.markdown
        if h.pattern:
            result = await docs.result(at.uri)
            names, why = docs.param_names(result) if result is not None else (None, "")
            if names is None:
                markdown += f"\n\n{why}"
            else:
                count, first = pattern_matches(h.pattern, names, 8)
                if count == 0:
                    markdown += f"\n\nMatches **no** parameter of the base model ({len(names)} parameters)."
                else:
                    listed = "\n".join(f"- `{n}`" for n in first)
                    more = f"\n- … and {count - len(first)} more" if count > len(first) else ""
                    markdown += f"\n\nMatches **{count}** of {len(names)} base parameters:\n\n{listed}{more}"
        return lsp.Hover(
            contents=lsp.MarkupContent(lsp.MarkupKind.Markdown, markdown), range=at.cols.range(h.range)
        )

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    async def definition(params: lsp.DefinitionParams) -> lsp.Location | None:
        at = _experiment_at(server, params)
        if at is None:
            return None
        from ..experiment.document import definition_at

        rng = await server.in_reader(definition_at, at.text, at.line, at.col, uri_path(at.uri))
        return None if rng is None else lsp.Location(uri=at.uri, range=at.cols.range(rng))

    @server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
    async def code_lens(params: lsp.CodeLensParams) -> list[lsp.CodeLens] | None:
        uri = params.text_document.uri
        if is_experiment(uri):
            result = await docs.result(uri)
            if result is None:
                return []
            return await experiment_lenses(server, uri, result, docs.state(uri).text)
        path = uri_path(uri)
        if path.name == "config.json" and await server.in_reader(is_hf_config, path):
            top = lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
            return [
                lsp.CodeLens(
                    top,
                    lsp.Command(
                        title="$(add) Create experiment file",
                        command=P.CMD_CREATE_EXPERIMENT_FILE,
                        arguments=[uri],
                    ),
                ),
                lsp.CodeLens(
                    top,
                    lsp.Command(
                        title="$(search) Inspect model", command=P.CMD_INSPECT_MODEL, arguments=[uri]
                    ),
                ),
            ]
        if path.suffix == ".py":
            doc = server.workspace.get_text_document(uri)
            return await server.in_reader(model_file_lenses, uri, doc.source)
        return None


def model_file_lenses(uri: str, source: str) -> list[lsp.CodeLens]:
    """ "Create experiment file" over each function of a Python file that returns an nn.Module
    and needs no arguments (read from its syntax tree: nothing is imported or run)."""
    from ..experiment.factories import MAX_SOURCE_BYTES, FactoryError, model_factories

    if "torch" not in source and "nn." not in source and "Module" not in source:
        return []  # not a model file: no parse on every keystroke in unrelated Python
    if len(source) > MAX_SOURCE_BYTES:
        return []  # generated or vendored code: not parsed on every keystroke

    try:
        found = model_factories(source)
    except FactoryError:
        return []  # the user is typing; the Python extension reports the syntax error
    lenses = []
    for f in found:
        if not f.callable_without_args:
            continue
        at = lsp.Range(lsp.Position(f.line, 0), lsp.Position(f.line, 0))
        title = f"$(add) Create experiment file for {f.name}()"
        lenses.append(
            lsp.CodeLens(
                at, lsp.Command(title=title, command=P.CMD_CREATE_EXPERIMENT_FILE, arguments=[uri, f.name])
            )
        )
    return lenses


async def experiment_lenses(
    server: BonsaiServer, uri: str, result: ParseResult, text: str | None = None
) -> list[lsp.CodeLens]:
    exp = result.experiment or result.partial
    if exp is None and text is not None:
        # a syntax error (an unclosed brace while typing) leaves no experiment: the variants it
        # does not touch keep their lenses
        from ..experiment.document import experiment_for_lenses

        exp = await server.in_reader(experiment_for_lenses, text, uri_path(uri), result)
    if exp is None:
        return []
    lenses: list[lsp.CodeLens] = []
    path = uri_path(uri).resolve()
    models: list[P.ModelInfo] = []
    defs: dict[str, P.MetricDef] = {}
    try:
        folder = server.folder_for(file=path)
        entry = await server.in_reader(server.lineage.get, folder, server.notify_lineage)
        models, defs = entry.models, entry.metrics
    except Exception:  # no lineage yet: the action lenses still show
        log.debug("no lineage for lenses", exc_info=True)
    by_id = {m["id"]: m for m in models}
    mine = {
        m["name"]: m for m in models if m.get("experiment", {}).get("file") == str(path)
    }  # newest last: it wins
    for m in models:  # a variant that made the same model as another (same fingerprint) is that model
        if m.get("experiment", {}).get("file") == str(path):
            for alias in m.get("aliases", []):
                mine.setdefault(alias, m)
    for declared in exp.declared or exp.variants:
        # A lens sits at column 0 of its variant's first line: 0 in every position encoding.
        top = lsp.Range(
            lsp.Position(declared.range.start_line, 0), lsp.Position(declared.range.start_line, 0)
        )
        args = [uri, declared.name]
        lenses.append(
            lsp.CodeLens(top, lsp.Command(title="▶ Run", command=P.CMD_RUN_VARIANT, arguments=args))
        )
        lenses.append(
            lsp.CodeLens(
                top,
                lsp.Command(title="Compare with parent", command=P.CMD_COMPARE_WITH_PARENT, arguments=args),
            )
        )
        lenses.append(
            lsp.CodeLens(
                top, lsp.Command(title="Show in Model Map", command=P.CMD_SHOW_IN_MODEL_MAP, arguments=args)
            )
        )
        expanded = [v for v in exp.variants if v.name == declared.name or v.sweep_of == declared.name]
        rows: list[P.SweepRow] = []
        run: list[P.ModelInfo] = []
        for v in expanded:
            model = mine.get(v.name)
            if model is None:
                continue
            parent = _declared_parent(model, v.name, by_id)
            title = metrics_lens_title(model, parent, defs, lineage_base(model, by_id))
            if not title:
                continue
            run.append(model)
            rows.append({"name": v.name, "title": title, "tooltip": noisy_note(model, parent, defs) or ""})
        if not rows:
            continue
        if len(expanded) == 1 and expanded[0].name == declared.name:
            lenses.append(
                lsp.CodeLens(
                    top,
                    lsp.Command(
                        title=rows[0]["title"],
                        command=P.CMD_SHOW_IN_MODEL_MAP,
                        arguments=[uri, declared.name],
                        tooltip=rows[0]["tooltip"] or None,
                    ),
                )
            )
            continue
        # A sweep: VS Code joins a line's lenses into one line and cuts it at the editor's edge
        # (six models' metrics showed as one, the first), so one summary whose command lists every
        # model on a line of its own, each against its parent and the base.
        lenses.append(
            lsp.CodeLens(
                top,
                lsp.Command(
                    title=f"{sweep_summary(run, len(expanded), defs)} · show all",
                    command=P.CMD_SHOW_SWEEP,
                    arguments=[uri, declared.name, rows],
                    tooltip="Each model of this sweep with its change against its parent and the base",
                ),
            )
        )
    return lenses


def _declared_parent(model: P.ModelInfo, variant: str, by_id: dict[str, P.ModelInfo]) -> P.ModelInfo | None:
    """The model the variant was made from (its `from`): a multi-op variant's stored parent is its
    own previous step (`name/1`), which the file does not name."""
    parent = by_id.get(model["parent"] or "")
    while parent is not None and parent["name"].startswith(f"{variant}/"):
        parent = by_id.get(parent["parent"] or "")
    return parent
