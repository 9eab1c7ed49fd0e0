"""Columns at the LSP boundary: the experiment parser counts code points, LSP clients count in
the position encoding negotiated at initialize (UTF-16 code units unless the client offered
another; pygls picks the client's first supported preference).

The two differ after any character outside the Basic Multilingual Plane (an emoji in a comment
or a name is two UTF-16 units but one code point), so every range going out and every position
coming in passes through a :class:`Columns` of the document's text: nowhere else in the server
converts columns. Lines are split as LSP splits them (``\\r\\n``, ``\\r`` or ``\\n``), not as
``str.splitlines`` does (which also breaks at form feeds and Unicode line separators).
"""

from __future__ import annotations

import re

from lsprotocol import types as lsp

from ..experiment import Range

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

UTF8 = "utf-8"
UTF16 = "utf-16"
UTF32 = "utf-32"


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == UTF32:
        return 1
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 2 if cp >= 0x10000 else 1  # UTF-16: a surrogate pair beyond the BMP


class Columns:
    """Converts columns of one text between code points (the parser) and client units (LSP)."""

    def __init__(self, text: str, encoding: str = UTF16):
        self.encoding = str(encoding or UTF16)
        self.lines = _LINE_BREAK.split(text)

    def _line(self, line: int) -> str:
        return self.lines[line] if 0 <= line < len(self.lines) else ""

    def to_client(self, line: int, col: int) -> int:
        """Code-point column `col` of `line` in client units (a column past the end stays past it)."""
        col = max(0, col)
        text = self._line(line)
        if self.encoding == UTF32 or text.isascii():
            return col
        return sum(_units(ch, self.encoding) for ch in text[:col]) + max(0, col - len(text))

    def from_client(self, line: int, units: int) -> int:
        """Client-unit column `units` of `line` as a code-point column. A column inside a
        surrogate pair (or a UTF-8 sequence) lands on the character that holds it."""
        text = self._line(line)
        if self.encoding == UTF32 or text.isascii():
            return max(0, units)
        seen = 0
        for i, ch in enumerate(text):
            if seen >= units:
                return i
            seen += _units(ch, self.encoding)
            if seen > units:
                return i
        return len(text) + max(0, units - seen)  # past the end: kept past it, as the client said

    def range(self, r: Range) -> lsp.Range:
        """A parser range (code points) as an LSP range in client units."""
        return lsp.Range(
            lsp.Position(r.start_line, self.to_client(r.start_line, r.start_col)),
            lsp.Position(r.end_line, self.to_client(r.end_line, r.end_col)),
        )

    def position(self, pos: lsp.Position) -> tuple[int, int]:
        """An LSP position (client units) as (line, code-point column) for the parser."""
        return pos.line, self.from_client(pos.line, pos.character)
