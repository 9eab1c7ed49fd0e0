"""The document model the language server asks: what is at a position, what fits there.

`node_at` names what the cursor is on (op name, parameter key or value of an op, a variant's
`from`, an include/exclude pattern, a key of a section, ...). `completions_at`, `hover_at` and
`definition_at` build on it. All of them work on text that does not parse (they read the
indentation, see `scan.py`), so they keep working while the user types.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..deploy.targets import TARGETS
from ..ops.registry import OpDef, Param, all_ops, closest_op, get_op, match_names
from . import taskinfo
from .keys import DEVICES, DTYPES, key_doc, keys_of
from .model import BASE, Experiment, ParseResult, Range, Variant
from .parse import parse_experiment
from .scan import Entry, PathElem, Scan, Spot, scan, spot_at, unquote

NodeKind = Literal[
    "top-key",
    "base-key",
    "task-key",
    "variant-key",
    "op-name",
    "param-key",
    "param-value",
    "pattern",
    "from-value",
    "device-value",
    "task-kind",
    "value",
    "none",
]

_SECTION_KIND: dict[str, NodeKind] = {"base": "base-key", "task": "task-key"}


class Document:
    """An experiment file's text, scanned once; pass it instead of the text to avoid rescans."""

    def __init__(self, text: str, path: Path | None = None):
        self.text = text
        self.path = path
        self.scan: Scan = scan(text)

    def entries_at(self, path: tuple[PathElem, ...]) -> list[Entry]:
        return [e for e in self.scan.entries if e.path == path]

    def value_of(self, path: tuple[PathElem, ...], key: str) -> Entry | None:
        return next((e for e in self.scan.entries if e.path == path and e.key == key), None)

    def variant_names(self) -> list[tuple[str, Entry]]:
        """Declared variant names (as written) with their `name:` entries, in file order."""
        return [
            (unquote(e.value), e)
            for e in self.scan.entries
            if len(e.path) == 2
            and e.path[0] == "variants"
            and isinstance(e.path[1], int)
            and e.key == "name"
            and e.value
        ]

    def base_name(self) -> str | None:
        e = self.value_of(("base",), "name")
        return unquote(e.value) if e is not None and e.value else None


def _doc(doc: Document | str) -> Document:
    return doc if isinstance(doc, Document) else Document(doc)


@dataclass
class NodeInfo:
    kind: NodeKind
    text: str  # the token under the cursor, unquoted
    prefix: str  # the part of it before the cursor
    range: Range  # the token
    path: tuple[PathElem, ...] = ()
    key: str | None = None  # the key whose value this is, or the key itself for key kinds
    op: str | None = None
    param: str | None = None
    variant: str | None = None  # the enclosing variant's declared name
    variant_index: int | None = None
    section: str | None = None
    siblings: tuple[str, ...] = field(default_factory=tuple)  # keys already present beside it


def node_at(doc: Document | str, line: int, col: int) -> NodeInfo:
    """What the cursor at (line, col) is on (0-based, like LSP)."""
    d = _doc(doc)
    s = spot_at(d.scan, line, col)
    info = _classify(d, s)
    if info.variant_index is not None:
        entry = d.value_of(("variants", info.variant_index), "name")
        info.variant = unquote(entry.value) if entry is not None and entry.value else None
    return info


def _classify(d: Document, s: Spot) -> NodeInfo:
    p = s.path
    mk = _Maker(s)
    if s.role == "none":
        return mk("none")
    variant_index = p[1] if len(p) >= 2 and p[0] == "variants" and isinstance(p[1], int) else None
    if s.role == "key":
        present = tuple(e.key for e in d.entries_at(p) if e.key) + s.flow_keys
        if p == ():
            return mk("top-key", key=s.text, siblings=present)
        if p in (("base",), ("task",)):
            return mk(_SECTION_KIND[str(p[0])], key=s.text, section=str(p[0]), siblings=present)
        if variant_index is not None and len(p) == 2:
            return mk("variant-key", key=s.text, variant_index=variant_index, siblings=present)
        if variant_index is not None and len(p) == 4 and p[2] == "ops":
            return mk("op-name", op=s.text or None, variant_index=variant_index)
        if variant_index is not None and len(p) == 5 and p[2] == "ops":
            return mk(
                "param-key",
                op=str(p[4]),
                param=s.text,
                key=s.text,
                variant_index=variant_index,
                siblings=present,
            )
        return mk("none")
    # values (role "value"): the value of `s.key` in the mapping at `p`, or a list item at `p`
    key = s.key
    if key is None and p and isinstance(p[-1], int):
        # a scalar list item: the list belongs to the key before the index
        key, p = (str(p[-2]) if len(p) >= 2 else None), p[:-2] if len(p) >= 2 else ()
    if p == () and key == "device":
        return mk("device-value", key=key)
    if p == ("task",) and key == "kind":
        return mk("task-kind", key=key, section="task")
    if variant_index is not None and len(p) == 2:
        if key == "from":
            return mk("from-value", key=key, variant_index=variant_index)
        if key == "ops":
            return mk("op-name", op=s.text or None, variant_index=variant_index)
        return mk("value", key=key, variant_index=variant_index)
    if variant_index is not None and len(p) == 5 and p[2] == "ops" and key is not None:
        return _param_value(mk, str(p[4]), key, variant_index)
    if variant_index is not None and len(p) == 4 and p[2] == "ops" and key is not None:
        # `- op.name: value` with the cursor in the value (no mapping): parameters go here
        return mk("value", key=key, op=key, variant_index=variant_index)
    section = str(p[0]) if len(p) == 1 and p[0] in ("base", "task") else None
    return mk("value", key=key, section=section)


def _param_value(mk: _Maker, op: str, param: str, vi: int) -> NodeInfo:
    definition = get_op(op)
    prm = definition.param(param) if definition is not None else None
    is_pattern = (prm is not None and prm.type == "patterns") or (
        prm is None and param in ("include", "exclude")
    )
    kind: NodeKind = "pattern" if is_pattern else "param-value"
    return mk(kind, key=param, op=op, param=param, variant_index=vi)


class _Maker:
    """Builds NodeInfos for one cursor spot (its token, prefix and range are shared)."""

    def __init__(self, s: Spot):
        self.s = s

    def __call__(self, kind: NodeKind, **kw: object) -> NodeInfo:
        return NodeInfo(kind, self.s.text, self.s.prefix, self.s.range, self.s.path, **kw)  # type: ignore[arg-type]


# -- completion ---------------------------------------------------------------------------------

CompletionKind = Literal["op", "param", "key", "variant", "value"]


@dataclass
class CompletionItem:
    label: str
    kind: CompletionKind
    detail: str = ""
    documentation: str = ""  # Markdown
    insert_text: str | None = None  # None: the label
    range: Range | None = None  # the text the item replaces (the token under the cursor)


def completions_at(
    doc: Document | str, line: int, col: int, path: Path | None = None
) -> list[CompletionItem]:
    """What fits at the cursor: keys, op names, parameters, parent names, enum values."""
    d = _doc(doc)
    info = node_at(d, line, col)
    rng = info.range
    k = info.kind
    if k in ("top-key", "base-key", "task-key", "variant-key"):
        section = {"top-key": "top", "base-key": "base", "task-key": "task", "variant-key": "variant"}[k]
        items = [
            CompletionItem(kd.key, "key", kd.type, kd.markdown(), _key_insert(kd.key, kd.type), rng)
            for kd in keys_of(section).values()
            if kd.key not in info.siblings or kd.key == info.text
        ]
        if section == "task":
            kind_entry = d.value_of(("task",), "kind")
            options = (
                taskinfo.task_options(unquote(kind_entry.value)) if kind_entry and kind_entry.value else None
            )
            for name, (typ, doc) in sorted((options or {}).items()):
                if name not in keys_of("task") and name not in info.siblings:
                    items.append(CompletionItem(name, "key", typ, doc, f"{name}: ", rng))
        return items
    if k == "op-name":
        line_text = d.scan.lines[line] if line < len(d.scan.lines) else ""
        has_colon = ":" in line_text[rng.end_col :]
        return [
            CompletionItem(
                op.name, "op", op.summary, op.markdown(), op.name if has_colon else f"{op.name}: {{}}", rng
            )
            for op in all_ops()
        ]
    if k == "param-key" and info.op:
        op = get_op(info.op)
        if op is None:
            return []
        return [
            CompletionItem(p.name, "param", param_detail(p), param_markdown(op, p), f"{p.name}: ", rng)
            for p in op.params
            if p.name not in info.siblings or p.name == info.text
        ]
    if k == "param-value" and info.op and info.param:
        op = get_op(info.op)
        prm = op.param(info.param) if op is not None else None
        if prm is None:
            return []
        if prm.type == "enum":
            return [
                CompletionItem(c, "value", f"{info.param} of {info.op}", prm.doc, c, rng) for c in prm.choices
            ]
        if prm.type == "bool":
            return [
                CompletionItem(c, "value", f"{info.param} of {info.op}", prm.doc, c, rng)
                for c in ("true", "false")
            ]
        return []
    if k == "from-value":
        return _parent_completions(d, info, rng, path)
    if _deploy_target(info):
        return [
            CompletionItem(t.name, "value", "deploy target", t.doc, t.name, rng) for t in TARGETS.values()
        ]
    if k == "device-value":
        return [
            CompletionItem(v, "value", "device", key_doc("top", "device").markdown(), v, rng)  # type: ignore[union-attr]
            for v in DEVICES
        ]
    if k == "value" and info.section == "base" and info.key == "dtype":
        kd = key_doc("base", "dtype")
        return [CompletionItem(v, "value", "dtype", kd.markdown() if kd else "", v, rng) for v in DTYPES]
    if k == "task-kind":
        return [
            CompletionItem(kind, "value", "task kind", taskinfo.task_doc(kind), kind, rng)
            for kind in taskinfo.builtin_kinds()
        ]
    return []


def _deploy_target(info: NodeInfo) -> bool:
    """The cursor is on a target of `deploy:` (the file's or a variant's, a list or `targets:`)."""
    if info.kind != "value":
        return False
    top = info.path[:1] == () or info.path[:1] == ("deploy",)
    in_variant = len(info.path) >= 3 and info.path[0] == "variants" and info.path[2] == "deploy"
    if info.key == "deploy":
        return top or in_variant
    return info.key == "targets" and (info.path[-1:] == ("deploy",) or in_variant)


def _key_insert(key: str, typ: str) -> str:
    """What a key completion inserts; the lines after the first are relative to the key's line
    (editors add that line's indentation)."""
    if typ == "mapping":
        return f"{key}:\n  "
    if key == "variants":
        return f"{key}:\n  - name: "
    if key == "ops":
        return f"{key}:\n  - "
    return f"{key}: "


def _parent_completions(d: Document, info: NodeInfo, rng: Range, path: Path | None) -> list[CompletionItem]:
    base_name = d.base_name()
    items = [
        CompletionItem(
            BASE, "variant", f"the base model{f' ({base_name})' if base_name else ''}", "", BASE, rng
        )
    ]
    seen = {BASE, info.variant}
    for name, _ in d.variant_names():
        if name not in seen:
            seen.add(name)
            items.append(CompletionItem(name, "variant", "variant", "", name, rng))
    for name, declared in _expanded_names(d, path):
        if name not in seen:
            seen.add(name)
            items.append(CompletionItem(name, "variant", f"sweep sibling of {declared}", "", name, rng))
    return items


def _expanded(d: Document, path: Path | None) -> list[Variant]:
    """The variants made by sweeps (and families), when the file parses far enough."""
    from .parse import parse_experiment

    result = parse_experiment(d.text, path or Path("untitled.bonsai.yaml"))
    exp = result.partial
    return [] if exp is None else [v for v in exp.variants if v.sweep_of is not None]


def _expanded_names(d: Document, path: Path | None) -> list[tuple[str, str]]:
    """(expanded name, declared name) of swept variants."""
    return [(v.name, v.sweep_of) for v in _expanded(d, path) if v.sweep_of is not None]


# -- hover --------------------------------------------------------------------------------------


@dataclass
class Hover:
    markdown: str
    range: Range
    #: for include/exclude patterns: the pattern, so the server can list the parameters it matches
    pattern: str | None = None
    op: str | None = None
    param: str | None = None


def param_detail(p: Param) -> str:
    typ = " | ".join(p.choices) if p.type == "enum" else p.type
    rng = f" {p.interval()}" if p.interval() else ""
    default = " (required)" if p.required else (f" = {p.default!r}" if p.default is not None else "")
    return f"{typ}{rng}{default}"


def param_markdown(op: OpDef, p: Param) -> str:
    sweep = " A list of values sweeps it." if p.sweepable and p.type not in ("patterns", "int_list") else ""
    return f"**{p.name}** ({param_detail(p)}) — parameter of `{op.name}`\n\n{p.doc}{sweep}"


def hover_at(doc: Document | str, line: int, col: int, path: Path | None = None) -> Hover | None:
    """What to show over the cursor. `path`: the file (a user task's file is found beside it)."""
    d = _doc(doc)
    info = node_at(d, line, col)
    if not info.text and info.kind not in ("pattern",):
        return None
    rng = info.range
    if info.kind == "op-name" and info.op:
        op = get_op(info.op)
        if op is None:
            hint = closest_op(info.op)
            return Hover(
                f"Unknown op `{info.op}`." + (f" Did you mean `{hint}`?" if hint else ""), rng, op=info.op
            )
        return Hover(op.markdown(), rng, op=op.name)
    if info.kind == "param-key" and info.op and info.param:
        op = get_op(info.op)
        prm = op.param(info.param) if op is not None else None
        if op is None or prm is None:
            return None
        return Hover(param_markdown(op, prm), rng, op=op.name, param=prm.name)
    if info.kind == "pattern":
        if not info.text:
            return None
        return Hover(
            f"Pattern `{info.text}` (`{info.param}` of `{info.op}`)",
            rng,
            pattern=info.text,
            op=info.op,
            param=info.param,
        )
    if info.kind == "param-value" and info.op and info.param:
        op = get_op(info.op)
        prm = op.param(info.param) if op is not None else None
        return Hover(param_markdown(op, prm), rng, op=info.op, param=info.param) if op and prm else None
    section = {"top-key": "top", "base-key": "base", "task-key": "task", "variant-key": "variant"}.get(
        info.kind
    )
    if section is not None:
        if section == "task":  # the task kind's own words first: they are more specific
            kind_entry = d.value_of(("task",), "kind")
            options = (
                taskinfo.task_options(unquote(kind_entry.value)) if kind_entry and kind_entry.value else None
            )
            if options and info.text in options:
                typ, text = options[info.text]
                return Hover(f"**task.{info.text}** — {typ}\n\n{text}", rng)
        kd = key_doc(section, info.text)
        return Hover(kd.markdown(), rng) if kd is not None else None
    if _deploy_target(info) and info.text in TARGETS:
        t = TARGETS[info.text]
        return Hover(f"**deploy target `{t.name}`** (`bonsai export --format {t.format}`)\n\n{t.doc}", rng)
    if info.kind == "task-kind":
        if taskinfo.is_user_kind(info.text):
            # Read, never imported: hovers run in untrusted workspaces too (see taskinfo).
            where = path or d.path
            text = taskinfo.user_task_doc(info.text, where.absolute().parent if where is not None else None)
            return Hover(
                f"**user task `{info.text}`** (loaded when a run starts)" + (f"\n\n{text}" if text else ""),
                rng,
            )
        text = taskinfo.task_doc(info.text)
        return Hover(f"**task kind `{info.text}`**" + (f"\n\n{text}" if text else ""), rng)
    if info.kind == "value" and info.key == "name" and info.variant_index is not None and len(info.path) == 2:
        siblings = [v for v in _expanded(d, d.path) if v.sweep_of == info.text]
        if not siblings:
            return None
        shown = "\n".join(f"- `{v.name}` from `{v.parent}`" for v in siblings[:12])
        more = f"\n- … and {len(siblings) - 12} more" if len(siblings) > 12 else ""
        return Hover(f"`{info.text}` makes **{len(siblings)}** variants:\n\n{shown}{more}", rng)
    if info.kind == "from-value":
        target = _declaration(d, info.text)
        if info.text == BASE or info.text == d.base_name():
            return Hover(f"The base model{f' `{d.base_name()}`' if d.base_name() else ''}", rng)
        if target is not None:
            return Hover(f"Variant `{info.text}` (line {target.start_line + 1})", rng)
    return None


def pattern_matches(
    pattern: str | Sequence[str], param_names: Sequence[str], first: int = 10
) -> tuple[int, list[str]]:
    """How many parameter names a glob pattern matches, and the first few of them."""
    matched = match_names(list(param_names), pattern)
    return len(matched), matched[:first]


# -- definition ---------------------------------------------------------------------------------


def definition_at(doc: Document | str, line: int, col: int, path: Path | None = None) -> Range | None:
    """From a `from:` value to the parent's declaration (its `name:` value; `base:` for the base)."""
    d = _doc(doc)
    info = node_at(d, line, col)
    if info.kind != "from-value" or not info.text:
        return None
    return _declaration(d, info.text, path)


def _declaration(d: Document, name: str, path: Path | None = None) -> Range | None:
    if name == BASE or name == d.base_name():
        entry = next((e for e in d.scan.entries if e.path == () and e.key == "base"), None)
        return entry.key_range if entry is not None else None
    for declared, entry in d.variant_names():
        if declared == name:
            return entry.value_range
    for expanded, declared_name in _expanded_names(d, path):
        if expanded == name:
            return _declaration(d, declared_name, path)
    return None


_ITEM = re.compile(r"^(\s*)-\s+name\s*:")


def experiment_for_lenses(text: str, path: Path, result: ParseResult) -> Experiment | None:
    """The experiment whose variants get CodeLenses: the parse's own (complete or partial), or,
    when a YAML syntax error left none (an unclosed `{` while typing), the text parsed again with
    the variant the error is in blanked out, so every other variant keeps its lenses. Blank
    lines, not removed ones: every other variant stays on its line. The parser reports a missing
    `}` where it gave up, which may be the next item, so the item before it is tried too."""
    exp = result.experiment or result.partial
    if exp is not None:
        return exp
    syntax = [p for p in result.problems if p.code == "yaml-syntax"]
    if not syntax:
        return None
    line = syntax[0].range.start_line
    lines = text.split("\n")
    starts = [i for i, s in enumerate(lines) if _ITEM.match(s)]
    k = max((j for j, s in enumerate(starts) if s <= line), default=None)
    if k is None:
        return None  # the error is above the variants: nothing to salvage
    for first in (k, k - 1):
        if first < 0:
            continue
        end = starts[first + 1] if first + 1 < len(starts) else len(lines)
        blanked = lines[: starts[first]] + [""] * (end - starts[first]) + lines[end:]
        again = parse_experiment("\n".join(blanked), path)
        if again.experiment is not None or again.partial is not None:
            return again.experiment or again.partial
    return None
