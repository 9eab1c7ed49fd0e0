"""Positions of tokens in a test's document text, found by the token itself: a test then keeps
pointing at its target when the text around it changes (hard-coded line numbers would silently
point at another token). A token that is not there fails the test rather than point elsewhere."""

from __future__ import annotations

from lsprotocol import types as lsp


def _utf16(s: str) -> int:
    """Length in UTF-16 code units: the position encoding a client negotiates by default."""
    return len(s.encode("utf-16-le")) // 2


def line_col(
    text: str, needle: str, nth: int = 0, *, offset: int = 0, utf16: bool = False
) -> tuple[int, int]:
    """(line, column) `offset` code points into the `nth` (0-based) occurrence of `needle` in
    `text` (0: its first character; len(needle): just after it). The column counts code points,
    as the experiment parser does, or with `utf16` UTF-16 code units, as an LSP position does."""
    if not 0 <= offset <= len(needle):
        raise ValueError(f"offset {offset} is outside {needle!r}")
    at = -1
    for _ in range(nth + 1):
        at = text.find(needle, at + 1)
        if at < 0:
            raise ValueError(f"{needle!r} does not occur {nth + 1} time(s) in the text")
    at += offset
    line_start = text.rfind("\n", 0, at) + 1
    before = text[line_start:at]
    return text.count("\n", 0, at), _utf16(before) if utf16 else len(before)


def position_of(text: str, needle: str, nth: int = 0, *, offset: int = 0) -> lsp.Position:
    """`line_col` as an LSP position (UTF-16 columns)."""
    return lsp.Position(*line_col(text, needle, nth, offset=offset, utf16=True))


def range_of(text: str, needle: str, nth: int = 0) -> tuple[int, int, int, int]:
    """(start line, start character, end line, end character) of the `nth` occurrence of
    `needle`, as an LSP range (UTF-16 columns)."""
    start = position_of(text, needle, nth)
    end = position_of(text, needle, nth, offset=len(needle))
    return (start.line, start.character, end.line, end.character)
