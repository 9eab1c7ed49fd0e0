"""Positions of tokens in a test's document text, found by the token itself: a test then keeps
pointing at its target when the text around it changes (hard-coded line numbers would silently
point at another token)."""

from __future__ import annotations

from lsprotocol import types as lsp


def _utf16(s: str) -> int:
    """Length in UTF-16 code units: the position encoding a client negotiates by default."""
    return len(s.encode("utf-16-le")) // 2


def position_of(text: str, needle: str, nth: int = 0, *, offset: int = 0) -> lsp.Position:
    """The position `offset` code points into the `nth` (0-based) occurrence of `needle` in
    `text` (0: its first character; len(needle): just after it), as a UTF-16 LSP position."""
    if not 0 <= offset <= len(needle):
        raise ValueError(f"offset {offset} is outside {needle!r}")
    at = -1
    for _ in range(nth + 1):
        at = text.find(needle, at + 1)
        if at < 0:
            raise ValueError(f"{needle!r} does not occur {nth + 1} time(s) in the text")
    at += offset
    line_start = text.rfind("\n", 0, at) + 1
    return lsp.Position(text.count("\n", 0, at), _utf16(text[line_start:at]))


def range_of(text: str, needle: str, nth: int = 0) -> tuple[int, int, int, int]:
    """(start line, start character, end line, end character) of the `nth` occurrence of `needle`."""
    start = position_of(text, needle, nth)
    end = position_of(text, needle, nth, offset=len(needle))
    return (start.line, start.character, end.line, end.character)
