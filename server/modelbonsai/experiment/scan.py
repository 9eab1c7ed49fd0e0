"""A line-based reading of an experiment file that works while it is being typed.

Editor features (completion, hover, go-to-definition) must work on text that is not valid YAML
yet, so instead of composing we follow the indentation: a stack of open keys and list items per
line, plus a small scanner for flow collections (`{sparsity: 0.5, scope: gl|`) inside a line.
This covers the block style the format is written in; it does not try to be a YAML parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import Range

PathElem = str | int
_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[^\s"'#\-{\[][^#]*?|-[^\s#][^#]*?)\s*:(?=\s|$)""")


@dataclass(frozen=True)
class Frame:
    col: int
    kind: str  # "key" | "item"
    name: PathElem


@dataclass
class Entry:
    """One key (or scalar list item) of the block structure, with what follows it on its line."""

    line: int
    path: tuple[PathElem, ...]  # the collection it lies in: keys and list item indices
    key: str | None
    key_range: Range | None
    value: str  # raw text after `key:` (or the item's text), comment removed, stripped
    value_range: Range | None
    col: int


@dataclass
class Spot:
    """Where the cursor is, structurally: the containing path, and the token under it."""

    path: tuple[PathElem, ...]
    role: str  # "key" (a key, possibly half typed) | "value" (the value of `key`) | "none"
    key: str | None  # the key whose value the cursor is in (role "value")
    text: str  # the whole token under the cursor, quotes removed
    prefix: str  # the part of the token before the cursor
    range: Range  # the token (as written, quotes included)
    flow_keys: tuple[str, ...] = ()  # keys already written in the flow mapping the cursor is in


@dataclass
class Scan:
    lines: list[str]
    entries: list[Entry] = field(default_factory=list)
    stacks: list[tuple[Frame, ...]] = field(default_factory=list)  # open frames before each line


def unquote(s: str) -> str:
    """A token without its quotes (also while the closing quote is not typed yet)."""
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s[:1] in ("'", '"') and s[0] not in s[1:]:
        return s[1:]
    return s


def strip_comment(s: str) -> str:
    """Drop a trailing `# comment` (not one inside quotes)."""
    quote = ""
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1].isspace()):
            return s[:i]
    return s


def _push_item(stack: list[Frame], col: int) -> None:
    index = 0
    while stack and (stack[-1].col > col or (stack[-1].col == col and stack[-1].kind == "item")):
        popped = stack.pop()
        if popped.col == col and popped.kind == "item" and isinstance(popped.name, int):
            index = popped.name + 1
    stack.append(Frame(col, "item", index))


def _pop_keys(stack: list[Frame], col: int) -> None:
    while stack and stack[-1].col >= col:
        stack.pop()


def scan(text: str) -> Scan:
    lines = text.splitlines()
    if text.endswith("\n") or not lines:
        lines.append("")
    out = Scan(lines)
    stack: list[Frame] = []
    block_col: int | None = None  # inside a block scalar (`|` or `>`) opened by a key at this column
    for n, raw in enumerate(lines):
        out.stacks.append(tuple(stack))
        body = strip_comment(raw).rstrip()
        if not body.strip():
            continue
        indent = len(body) - len(body.lstrip())
        if block_col is not None:
            if indent > block_col:
                continue
            block_col = None
        col = indent
        rest = body[indent:]
        while rest == "-" or rest.startswith("- "):
            _push_item(stack, col)
            step = 1 + (len(rest) - 1 - len(rest[1:].lstrip()))
            col += step
            rest = rest[step:]
            if not rest:
                break
        if not rest:
            continue
        m = _KEY.match(rest)
        if m:
            key_text = m.group("key")
            _pop_keys(stack, col)
            value_start = col + m.end()
            value_raw = body[value_start:]
            value = value_raw.strip()
            vcol = value_start + (len(value_raw) - len(value_raw.lstrip()))
            out.entries.append(
                Entry(
                    n,
                    tuple(f.name for f in stack),
                    unquote(key_text),
                    Range(n, col, n, col + len(key_text)),
                    value,
                    Range(n, vcol, n, vcol + len(value)) if value else None,
                    col,
                )
            )
            stack.append(Frame(col, "key", unquote(key_text)))
            if value[:1] in ("|", ">"):
                block_col = col
        else:
            value = rest.strip()
            out.entries.append(
                Entry(
                    n,
                    tuple(f.name for f in stack),
                    None,
                    None,
                    value,
                    Range(n, col, n, col + len(value)),
                    col,
                )
            )
    return out


def spot_at(sc: Scan, line: int, col: int) -> Spot:
    """What the cursor at (line, col) is on, from the indentation above it and the line itself."""
    if line >= len(sc.lines):
        return Spot((), "key", None, "", "", Range(line, col, line, col))
    raw = sc.lines[line]
    col = min(col, len(raw))
    stack = list(sc.stacks[line]) if line < len(sc.stacks) else []
    body = strip_comment(raw)
    if col > len(body.rstrip()) and body.rstrip() != raw.rstrip():
        return Spot((), "none", None, "", "", Range(line, col, line, col))  # in a comment
    indent = len(body) - len(body.lstrip())
    before = raw[:col]
    if not before.strip():
        # Nothing typed before the cursor on this line: a key is about to be typed at this column
        # (or the cursor sits at the start of an existing key).
        c = col if not raw.strip() else indent
        _pop_keys(stack, c)
        return _key_spot(stack, raw, line, c, col)
    pos = indent
    rest = body[indent:]
    while rest == "-" or rest.startswith("- "):
        _push_item(stack, pos)
        step = 1 + (len(rest) - 1 - len(rest[1:].lstrip()))
        if pos + step > col:  # cursor right after the dash
            return _key_spot(stack, raw, line, col, col)
        pos += step
        rest = rest[step:]
    m = _KEY.match(rest)
    if m is None:
        if rest.lstrip().startswith(("{", "[")):
            return _flow_spot(stack, raw, line, pos, col, None)
        # A word typed where a key or a list item goes: the context decides which.
        _pop_keys(stack, pos)
        return _key_spot(stack, raw, line, pos, col, item=bool(stack) and stack[-1].kind == "item")
    key_end = pos + m.end()
    if col < key_end:
        _pop_keys(stack, pos)
        return _key_spot(stack, raw, line, pos, col)
    key = unquote(m.group("key"))
    _pop_keys(stack, pos)
    stack.append(Frame(pos, "key", key))
    value_text = body[key_end:]
    vstart = key_end + (len(value_text) - len(value_text.lstrip()))
    if value_text.lstrip().startswith(("{", "[")) and col >= vstart:
        return _flow_spot(stack, raw, line, vstart, col, key)
    value = value_text.strip()
    rng = Range(line, vstart, line, vstart + len(value)) if col >= vstart else Range(line, col, line, col)
    prefix = raw[vstart:col] if col >= vstart else ""
    path = tuple(f.name for f in stack[:-1])
    return Spot(path, "value", key, unquote(value), prefix.lstrip("'\""), rng)


def _key_spot(stack: list[Frame], raw: str, line: int, start: int, col: int, item: bool = False) -> Spot:
    body = strip_comment(raw)
    end = start
    m = _KEY.match(body[start:])
    if m:
        end = start + len(m.group("key"))
    else:
        while end < len(body.rstrip()) and body[end] not in ":{}[],":
            end += 1
        while end > start and body[end - 1].isspace():
            end -= 1
    token = body[start:end]
    path = tuple(f.name for f in stack)
    role = "value" if item else "key"
    return Spot(
        path,
        role,
        None,
        unquote(token),
        raw[start:col].lstrip("'\""),
        Range(line, start, line, max(end, col)),
    )


@dataclass
class _Flow:
    """One open flow collection while scanning a line: `{` (with its current key) or `[`."""

    bracket: str  # "{" or "["
    key: str | None = None  # the key being given a value (mappings)
    at_key: bool = True  # whether the cursor would be typing a key (mappings)
    keys: list[str] = field(default_factory=list)  # keys written so far (mappings)
    index: int = 0  # the item being written (lists)


def _flow_spot(stack: list[Frame], raw: str, line: int, start: int, col: int, key: str | None) -> Spot:
    """Scan a flow collection from `start` to the cursor, tracking open `{`/`[` and keys."""
    body = strip_comment(raw)
    ctx: list[_Flow] = []
    token_start = start
    quote = ""
    for i in range(start, col):
        ch = body[i] if i < len(body) else " "
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "{[":
            ctx.append(_Flow(ch))
            token_start = i + 1
        elif ch in "}]":
            if ctx:
                ctx.pop()
            token_start = i + 1
        elif ch == ":" and ctx and ctx[-1].bracket == "{" and ctx[-1].at_key:
            top = ctx[-1]
            top.key, top.at_key = unquote(body[token_start:i]), False
            top.keys.append(top.key)
            token_start = i + 1
        elif ch == "," and ctx:
            top = ctx[-1]
            if top.bracket == "{":
                top.key, top.at_key = None, True
            else:
                top.index += 1
            token_start = i + 1
    while token_start < col and body[token_start].isspace():
        token_start += 1
    end = col  # forward to the end of the token, in the quoting state the cursor is in
    while end < len(body):
        ch = body[end]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in ",:{}[]" or (ch == "#" and body[end - 1].isspace()):
            break
        end += 1
    while end > col and body[end - 1].isspace():
        end -= 1
    token = unquote(body[token_start:end])
    prefix = body[token_start:col].lstrip("'\"")
    rng = Range(line, token_start, line, max(end, col))
    # The path: the block path, then for each open collection the key or index it is under.
    path: list[PathElem] = [f.name for f in stack]
    if key is not None and path and path[-1] == key:
        path.pop()
    under: str | None = key  # the key the next collection is the value of
    for j, flow in enumerate(ctx):
        last = j == len(ctx) - 1
        if under is not None:
            path.append(under)
            under = None
        if flow.bracket == "[":
            if last:
                # an item of a list: report it as (one of) the value(s) of the list's key
                owner = path.pop() if path and isinstance(path[-1], str) else key
                return Spot(
                    tuple(path), "value", str(owner) if owner is not None else None, token, prefix, rng
                )
            path.append(flow.index)
        elif last:
            if flow.at_key:
                return Spot(tuple(path), "key", None, token, prefix, rng, tuple(flow.keys))
            return Spot(tuple(path), "value", flow.key, token, prefix, rng, tuple(flow.keys))
        else:
            under = flow.key
    return Spot(tuple(path), "value", key, token, prefix, rng)
