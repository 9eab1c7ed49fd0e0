"""YAML composed into nodes that keep their source positions, and the few helpers over them.

We compose (not load) so every key and value keeps its start and end mark: diagnostics, hover and
go-to-definition need the exact node. Values are then built one scalar at a time.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import Range

__all__ = [
    "MappingNode",
    "Node",
    "ScalarNode",
    "SequenceNode",
    "YamlSyntaxError",
    "compose",
    "head_range",
    "node_range",
    "to_value",
    "type_name",
]

# YAML 1.1 (PyYAML) reads `1e-3` as a string; users mean a number, so plain scalars that look
# like numbers become numbers.
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# libyaml's parser reports the same marks and is ~10x faster (files are parsed on every keystroke).
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml counts a reader error's position in bytes of UTF-8, PyYAML's reader in characters.
_READER_BYTES = _LOADER is not yaml.SafeLoader

#: How many values aliases may add to a file when expanded. Values are built by walking the node
#: graph, where an alias is a shared node: a few hundred bytes of aliases of aliases expand to
#: millions of values (an "alias bomb") and the editor would hang on every keystroke. Reusing a
#: block of settings a few dozen times stays far below this.
ALIAS_BUDGET = 10_000
#: How deep values may nest (an experiment file needs about 6 levels). Walking deeper values would
#: exhaust Python's recursion limit.
MAX_DEPTH = 64


class YamlSyntaxError(Exception):
    """The text is not YAML; `range` is where the parser gave up."""

    def __init__(self, message: str, range: Range):
        super().__init__(message)
        self.message = message
        self.range = range


def compose(text: str) -> Node | None:
    """Compose one YAML document into position-carrying nodes (None for an empty document).

    Also refuses what would make walking the nodes blow up: aliases expanding beyond
    `ALIAS_BUDGET` values, an alias inside the collection it names (infinitely deep), values
    nested deeper than `MAX_DEPTH`; each at the alias or value responsible."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as e:
        problem = e.problem or "invalid YAML"
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        lines = text.splitlines()
        char = lines[line][col : col + 1] if line < len(lines) else ""
        hint = _hint(problem, e.context or "", char)
        if "quoted scalar" in (e.context or "") and e.context_mark is not None:
            mark = e.context_mark  # point at the opening quote, not the end of the file
            line, col = mark.line, mark.column
        context = f" ({e.context})" if e.context else ""
        message = f"YAML syntax error: {hint or problem + context}"
        opened = e.context_mark
        if "flow" in (e.context or "") and opened is not None and opened.line != line:
            message += f" (opened on line {opened.line + 1})"
        return _raise(message, _token_range(text, line, col))
    except yaml.reader.ReaderError as e:  # a character YAML does not allow: no mark, a position
        line, col = _line_col(text, e.position, in_bytes=_READER_BYTES)
        what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise YamlSyntaxError(
            f"YAML syntax error: the character {what} is not allowed in YAML ({e.reason})",
            Range(line, col, line, col + 1),
        ) from e
    except yaml.YAMLError as e:  # e.g. composer errors without marks, multiple documents
        raise YamlSyntaxError(f"YAML syntax error: {e}", Range(0, 0, 0, 0)) from e
    except RecursionError as e:  # PyYAML's pure-Python composer on deep nesting (libyaml stops at 1000)
        raise YamlSyntaxError(
            f"YAML syntax error: values are nested more than {MAX_DEPTH} levels deep", Range(0, 0, 0, 0)
        ) from e
    if root is not None:
        _check_graph(root, text)
    return root


def _line_col(text: str, position: int, *, in_bytes: bool) -> tuple[int, int]:
    """(line, column in code points) of an offset into `text`."""
    before = text.encode("utf-8")[:position].decode("utf-8", "ignore") if in_bytes else text[:position]
    return before.count("\n"), len(before) - (before.rfind("\n") + 1)


def _check_graph(root: Node, text: str) -> None:
    """Raise YamlSyntaxError for an alias bomb, a recursive alias or too deep nesting.

    One walk in document order, without recursion. A node met for the first time is where it is
    written; a node met again is an alias (aliases name earlier anchors, so the k-th node met
    again is the file's k-th alias), either of a finished node (adding its expanded size) or of
    a collection still being walked (an alias inside its own anchor's collection)."""
    size: dict[int, int] = {}  # id -> expanded node count, for nodes walked to the end
    open_ids: set[int] = set()  # collections being walked (the current path)
    aliases = added = 0
    # Each frame: [node, its children, next child index, expanded size so far].
    stack: list[list[Any]] = []

    def enter(node: Node) -> None:
        if len(stack) >= MAX_DEPTH:
            raise YamlSyntaxError(
                f"YAML: values nested more than {MAX_DEPTH} levels deep; an experiment file needs far fewer",
                node_range(node),
            )
        if isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        else:
            size[id(node)] = 1
            return
        open_ids.add(id(node))
        stack.append([node, children, 0, 1])

    enter(root)
    while stack:
        frame = stack[-1]
        node, children, i = frame[0], frame[1], frame[2]
        if i == len(children):
            stack.pop()
            open_ids.discard(id(node))
            size[id(node)] = frame[3]
            if stack:
                stack[-1][3] += frame[3]
            continue
        frame[2] = i + 1
        child = children[i]
        if id(child) in open_ids:
            name, rng = _alias_at(text, aliases)
            raise YamlSyntaxError(
                f"YAML: the alias *{name} is inside the {type_name(child)[2:]} it names, "
                "which would make it infinitely deep",
                rng,
            )
        if id(child) in size:
            aliases += 1
            added += size[id(child)]
            frame[3] += size[id(child)]
            if added > ALIAS_BUDGET:
                name, rng = _alias_at(text, aliases - 1)
                raise YamlSyntaxError(
                    f"YAML: aliases here expand to more than {ALIAS_BUDGET:,} values (the alias "
                    f"*{name} repeats {size[id(child)]:,}); write the values out, or alias less",
                    rng,
                )
            continue
        enter(child)
        if id(child) in size:  # a scalar: counted at once
            frame[3] += 1


def _alias_at(text: str, k: int) -> tuple[str, Range]:
    """The name and range of the k-th (0-based) alias of the text, in document order."""
    n = 0
    try:
        for token in yaml.scan(text, Loader=_LOADER):
            if isinstance(token, yaml.AliasToken):
                if n == k:
                    s, e = token.start_mark, token.end_mark
                    return str(token.value), Range(s.line, s.column, e.line, e.column)
                n += 1
    except yaml.YAMLError:
        pass
    return "?", Range(0, 0, 0, 0)  # not expected: the text composed, so it scans


def _hint(problem: str, context: str, char: str) -> str | None:
    """A plainer wording of the parser's most common complaints (libyaml's and PyYAML's)."""
    if "cannot start any token" in problem and char == "\t":
        return "tabs cannot indent YAML; use spaces"
    if problem.startswith(("expected <block end>", "did not find expected key", "did not find expected '-'")):
        return "this line's indentation does not match the lines above"
    if problem.startswith("mapping values are not allowed"):
        return "unexpected ':' here; quote the value, or put the nested key on its own indented line"
    if "quoted scalar" in context:
        return "a quoted string is not closed"
    if "expected ',' or ']'" in problem:
        return "a list in [ ] is not closed (expected ',' or ']')"
    if "expected ',' or '}'" in problem:
        return "a mapping in { } is not closed (expected ',' or '}')"
    if "another document" in problem:
        return "an experiment file holds one YAML document; remove the second `---`"
    return None


def _raise(message: str, range: Range) -> Node:
    raise YamlSyntaxError(message, range)


def _token_range(text: str, line: int, col: int) -> Range:
    """A range from the error mark to the end of the word there (at least one character)."""
    lines = text.splitlines()
    if line >= len(lines):
        return Range(line, col, line, col)
    s = lines[line]
    end = col
    while end < len(s) and not s[end].isspace():
        end += 1
    return Range(line, col, line, max(end, min(col + 1, len(s))))


def node_range(node: Node) -> Range:
    s, e = node.start_mark, node.end_mark
    if isinstance(node, (MappingNode, SequenceNode)) and node.flow_style is not True:
        # A block collection ends at the start of the next line; stop at the last content.
        return Range(s.line, s.column, *_last_content(node))
    return Range(s.line, s.column, e.line, e.column)


def _last_content(node: Node) -> tuple[int, int]:
    if isinstance(node, MappingNode) and node.value:
        return _end(node.value[-1][1])
    if isinstance(node, SequenceNode) and node.value:
        return _end(node.value[-1])
    return node.end_mark.line, node.end_mark.column


def _end(node: Node) -> tuple[int, int]:
    r = node_range(node)
    return r.end_line, r.end_col


def head_range(node: Node, text_lines: list[str]) -> Range:
    """The first line of a node (for problems about a whole mapping, e.g. a missing key)."""
    s = node.start_mark
    line = text_lines[s.line] if s.line < len(text_lines) else ""
    end = len(line.rstrip())
    r = node_range(node)
    if r.end_line == s.line:
        end = r.end_col
    return Range(s.line, s.column, s.line, max(end, s.column))


_constructor = SafeConstructor()


def to_value(node: Node) -> Any:
    """The Python value of a node (scalars typed by YAML's rules, number-like strings as numbers)."""
    if isinstance(node, ScalarNode):
        plain = not node.style  # None from PyYAML, "" from libyaml
        if node.tag == "tag:yaml.org,2002:str" and plain and _NUMBER.match(node.value):
            text = node.value
            try:
                return float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:  # more digits than Python converts (4300): left as written
                return text
        try:
            return _constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError):
            return node.value
        finally:
            # the constructor caches every node it built; keep a long-lived server from growing
            _constructor.constructed_objects.clear()
    if isinstance(node, SequenceNode):
        return [to_value(n) for n in node.value]
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = to_value(k)
            out[key if _hashable(key) else str(key)] = to_value(v)
        return out
    return None


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def type_name(node: Node) -> str:
    """How to name a node's type in a message."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    v = to_value(node)
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"{str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str) and len(v) > 60:  # a message quotes the start of a long value
        if isinstance(node, ScalarNode) and not node.style and _NUMBER.match(v):
            return f"a number too long to read ({len(v):,} characters)"
        return f"'{v[:40]}…' ({len(v):,} characters)"
    return f"'{v}'"
