"""Rows of a JSON array file, parsed element by element, so a large array is never held whole.

``iter_json_array(path)`` yields ``(row, value)`` pairs with ``row`` = array index + 1 (the
numbering of JSON rows everywhere in instructkit). The file is read in 1 MiB chunks; each
element is decoded by :meth:`json.JSONDecoder.raw_decode` from a text buffer that holds the
unread rest of the current chunk and, while an element spans chunks, the element itself. Memory
is therefore one chunk plus the largest element, not the file. No dependency beyond ``json``
(``ijson`` would do the same in C, but is not a dependency of instructkit).

A file whose first character is not ``[`` (an object holding a list, a bare record, a ``.json``
file that really holds JSONL) is not an array: :func:`is_json_array` tells the caller, which
reads it whole. A malformed element, a missing ``,`` or ``]``, text after the array, and bytes
that are not UTF-8 are one :class:`~instructkit.errors.DataFormatError` naming the element's
index (as its row), its line and column, and the fix. Usage::

    if is_json_array(path):
        for row, value in iter_json_array(path):
            ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from instructkit.errors import DataFormatError

__all__ = ["is_json_array", "iter_json_array"]

CHUNK_CHARS = 1 << 20
_WHITESPACE = " \t\r\n"
_MARGIN = 16  # chars at the buffer's end that may belong to a cut number or literal
_FIX = (
    "repair the element, or store the rows as JSONL (one object per line), where a bad line is "
    "one reject that skip_invalid can set aside."
)


def is_json_array(path: str | Path) -> bool:
    """Whether the file's first non-space text (after a BOM) is ``[``."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    except OSError:
        return False
    return head.startswith(b"[")


def iter_json_array(path: str | Path, chunk_chars: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(index + 1, element)`` of the top-level array in ``path``, read ``chunk_chars`` (default
    :data:`CHUNK_CHARS`) characters at a time; see the module doc."""
    try:
        f = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataFormatError(
            f"cannot read the file: {e.strerror or e}.", path=path, fix="check the path."
        ) from e
    with f:
        reader = _Reader(f, path, chunk_chars or CHUNK_CHARS)
        try:
            yield from reader.elements()
        except UnicodeDecodeError as e:
            raise DataFormatError(
                "the file is not UTF-8 text (in or after the array element at index "
                f"{reader.index}).",
                path=path,
                fix="re-save the file as UTF-8.",
            ) from e


class _Reader:
    """A text buffer over the file: ``buf[pos:]`` is unread, ``lines`` counts the line breaks
    of the text dropped from the buffer (for line numbers in errors)."""

    def __init__(self, f: TextIO, path: str | Path, chunk_chars: int) -> None:
        self.f, self.path, self.chunk_chars = f, path, chunk_chars
        self.buf, self.pos, self.lines, self.eof = "", 0, 0, False
        self.column0 = 0  # characters of the buffer's first line that were dropped before it
        self.index = 0  # of the element being read
        self.decoder = json.JSONDecoder()

    def elements(self) -> Iterator[tuple[int, Any]]:
        if self._next_char() != "[":
            raise self._error("expected a JSON array ('[').", None)
        self.pos += 1
        if self._next_char() == "]":
            self.pos += 1
        else:
            while True:
                yield self.index + 1, self._element()
                self.index += 1
                sep = self._next_char()
                if sep not in (",", "]"):
                    what = repr(sep) if sep else "the end of the file"
                    msg = f"expected ',' or ']' after array element at index {self.index - 1}, "
                    msg += f"got {what}."
                    raise self._error(msg, self.index)
                self.pos += 1
                if sep == "]":
                    break
        if self._next_char():
            raise self._error("text after the end of the array.", None)

    def _element(self) -> Any:
        """The next value, reading more text while it may run past the buffer's end."""
        while True:
            self._next_char()
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if _maybe_cut(e, len(self.buf)) and self._read(len(self.buf) - self.pos):
                    continue
                msg = f"invalid JSON in the array element at index {self.index}: {e.msg}."
                raise self._error(msg, self.index + 1, e.pos) from e
            except (RecursionError, ValueError) as e:  # nested too deeply; an int of 4300+ digits
                why = str(e) or "nested too deeply"
                msg = f"invalid JSON in the array element at index {self.index}: {why}."
                raise self._error(msg, self.index + 1) from e
            # a number near the buffer's end may go on in the next chunk ("1" of "1.5", "1e+3")
            if end > len(self.buf) - _MARGIN and self._read(len(self.buf) - self.pos):
                continue
            self.pos = end
            return value

    def _next_char(self) -> str:
        """The next non-space character (not consumed); "" at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._read(0):
                return ""

    def _read(self, pending: int) -> bool:
        """Append the next chunk (dropping consumed text); False at the end of the file. While
        one element spans chunks (``pending`` chars of it are read) the chunk grows with it, so
        re-parsing it costs linear, not quadratic, time."""
        if self.eof:
            return False
        chunk = self.f.read(max(self.chunk_chars, pending))
        if not chunk:
            self.eof = True
            return False
        self.lines += self.buf.count("\n", 0, self.pos)
        last = self.buf.rfind("\n", 0, self.pos)
        self.column0 = self.pos - last - 1 if last >= 0 else self.column0 + self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _error(self, message: str, row: int | None, pos: int | None = None) -> DataFormatError:
        at = self.pos if pos is None else pos
        line = self.lines + self.buf.count("\n", 0, at) + 1
        last = self.buf.rfind("\n", 0, at)
        column = at - last if last >= 0 else self.column0 + at + 1
        return DataFormatError(
            f"{message.rstrip('.')} (line {line}, column {column}).",
            path=self.path,
            row=row,
            fix=_FIX,
        )


def _maybe_cut(e: json.JSONDecodeError, end: int) -> bool:
    """Whether the error may come from the buffer ending inside the element: an open string,
    or an error within a literal's length (``-Infinity``) of the buffer's end."""
    return e.msg.startswith("Unterminated string") or e.pos > end - _MARGIN
