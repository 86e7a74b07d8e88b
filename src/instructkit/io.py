"""JSON and JSONL rows on disk: read them with their row numbers, write them atomically,
append to them durably, and repair a torn last line by truncation.

``read_rows(path)`` returns ``(row_no, value)`` pairs. Row numbers are 1-based: the line number in
a JSONL file, the array index + 1 in a JSON file. A JSONL line that is not valid JSON comes back
as a :class:`BadLine` so the caller can reject it and keep going; problems with the whole file
(missing, not UTF-8, empty, a broken JSON document) raise
:class:`~instructkit.errors.DataFormatError`.

``write_rows(rows, path)`` writes a JSON array when the path ends in ``.json`` and JSONL otherwise,
UTF-8 with non-ASCII text kept as is, through a temporary file in the same folder that replaces
the target only once it is complete.

``append_jsonl(rows, path)`` appends and fsyncs, so a row is on disk once the call returns; a
kill in the middle of an append can leave a torn last line, which ``repair_torn_tail(path)``
cuts off by truncating the file at its last newline. The repair never rewrites the file, so a
kill during the repair itself loses nothing that was complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.errors import DataFormatError

__all__ = [
    "BadLine",
    "RECORD_KEYS",
    "read_rows",
    "write_rows",
    "write_jsonl",
    "write_atomic",
    "read_text",
    "beside",
    "append_jsonl",
    "repair_torn_tail",
]

# Keys that mark an object as one record rather than a wrapper around a list of records.
RECORD_KEYS = frozenset(
    {"instruction", "output", "conversations", "messages", "prompt", "completion", "chosen"}
)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_JSON_KINDS = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that does not parse: its text and the JSON error."""

    text: str
    message: str


def read_rows(path: str | Path) -> list[tuple[int, Any]]:
    """Rows of a .json (array, or one object holding a list) or .jsonl file, with row numbers."""
    text = read_text(path)
    if not text.strip():
        raise DataFormatError(
            "the file is empty.", path=path, fix="point at a file with at least one row."
        )
    suffix = Path(path).suffix.lower()
    as_json = suffix == ".json" or (suffix not in _JSONL_SUFFIXES and text.lstrip().startswith("["))
    rows = _json_rows(text, path) if as_json else _jsonl_rows(text)
    if not rows:
        raise DataFormatError(
            "the file holds no rows.", path=path, fix="point at a file with at least one row."
        )
    return rows


def beside(path: str | Path, suffix: str) -> Path:
    """A file next to ``path`` named after its stem: ``("a/b.jsonl", ".rejects.jsonl")`` ->
    ``a/b.rejects.jsonl``. Every companion file (rejects, journals, per-item rows) is named so."""
    p = Path(path)
    return p.with_name(p.stem + suffix)


def read_text(
    path: str | Path, *, newline: str | None = None, utf8_fix: str = "re-save the file as UTF-8."
) -> str:
    """The text of a UTF-8 file (a BOM is dropped); DataFormatError says what is wrong.

    ``newline=""`` keeps line endings as they are (CSV cells may hold ``\r\n``); ``utf8_fix``
    is the fix named when the bytes are not UTF-8.
    """
    try:
        with open(path, encoding="utf-8-sig", newline=newline) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"the file is not UTF-8 text (bad byte at offset {e.start}).", path=path, fix=utf8_fix
        ) from e
    except OSError as e:
        raise DataFormatError(
            f"cannot read the file: {e.strerror or e}.", path=path, fix="check the path."
        ) from e


def _jsonl_rows(text: str) -> list[tuple[int, Any]]:
    # split("\n"), not splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    rows: list[tuple[int, Any]] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((line_no, json.loads(line)))
        except json.JSONDecodeError as e:
            rows.append((line_no, BadLine(line.rstrip("\r"), f"{e.msg} at column {e.colno}")))
    return rows


def _json_rows(text: str, path: str | Path) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return _jsonl_rows(text)  # a .json file that really holds JSONL
        raise DataFormatError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}.",
            path=path,
            fix="repair the file, or store it as JSONL (one object per line) so that bad "
            "lines can be skipped with --skip-invalid.",
        ) from e
    if isinstance(data, dict):
        data = _unwrap(data, path)
    if not isinstance(data, list):
        raise DataFormatError(
            f"expected a JSON array of rows, got {_JSON_KINDS.get(type(data), 'a value')}.",
            path=path,
            fix="store the rows as a JSON array, or as JSONL.",
        )
    return [(i + 1, value) for i, value in enumerate(data)]


def _unwrap(data: dict[str, Any], path: str | Path) -> list[Any]:
    """The row list inside ``{"data": [...]}``; a bare record counts as a one-row file."""
    if RECORD_KEYS.intersection(data):
        return [data]
    lists = [key for key, value in data.items() if isinstance(value, list)]
    if len(lists) != 1:
        found = ", ".join(f"'{k}'" for k in lists) or "none"
        raise DataFormatError(
            f"expected a JSON array of rows or an object holding one list of rows; "
            f"lists found: {found}.",
            path=path,
            fix="store the rows as a top-level JSON array, or as JSONL.",
        )
    rows: list[Any] = data[lists[0]]
    return rows


def write_atomic(path: str | Path, chunks: Iterable[str]) -> None:
    """Write text to a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes the file private; keep ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonl_chunks(rows: Iterable[Any]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(rows: Iterable[Any], path: str | Path) -> None:
    """Write one JSON value per line, atomically."""
    write_atomic(path, _jsonl_chunks(rows))


def write_rows(rows: list[Any], path: str | Path) -> None:
    """Write a JSON array if ``path`` ends in .json, else JSONL; atomically, UTF-8."""
    if Path(path).suffix.lower() == ".json":
        write_atomic(path, [json.dumps(rows, ensure_ascii=False, indent=2), "\n"])
    else:
        write_jsonl(rows, path)


def append_jsonl(rows: Iterable[Any], path: str | Path) -> int:
    """Append one JSON value per line and fsync; returns the number of rows written.

    The rows go out in one write, so a kill leaves at most one torn line at the end (see
    :func:`repair_torn_tail`), never a gap.
    """
    text = "".join(_jsonl_chunks(rows))
    if not text:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return text.count("\n")


def repair_torn_tail(path: str | Path) -> int:
    """Cut a torn last line (bytes after the last newline) off ``path``; returns bytes cut.

    Truncation is one system call that only shortens the file: a kill before it leaves the
    torn file (repaired next time), a kill after it leaves the repaired one. Missing file: 0.
    """
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end == size:
            return 0
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
        return size - end
