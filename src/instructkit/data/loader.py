"""The one dataset loader: any source (see :mod:`instructkit.data.sources`) -> records + rejects.

``load_dataset(spec)`` reads a file, a ``save_to_disk`` folder or a Hugging Face dataset in any
instruction format (auto-detected or given) into a :class:`~instructkit.data.formats.LoadResult`.
:class:`RecordStream` does the same lazily, for files too large to hold: ``data validate`` and
``data convert`` iterate it and write as they go. Every bad row becomes one
:class:`~instructkit.data.formats.Reject` naming the source, the source row (JSONL/CSV line,
Parquet/Arrow row index), the field and the fix; without ``skip_invalid`` the first one raises
:class:`~instructkit.errors.DataFormatError`. Usage::

    loaded = load_dataset("train.parquet")
    loaded = load_dataset({"path": "qa.csv", "columns": {"prompt": "question", "response": "a"}})
    stream = RecordStream("big.jsonl", skip_invalid=True)
    for row, record in stream:  # record is a Record or a Reject
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instructkit.data.formats import FORMATS, LoadResult, Reject, detect_format, parse_row
from instructkit.data.records import Record
from instructkit.data.sources import SpecLike, as_spec, iter_source_rows, source_name
from instructkit.errors import DataFormatError
from instructkit.io import BadLine

__all__ = ["RecordStream", "load_dataset", "reject_of", "with_skip_hint"]

SKIP_HINT = (
    "pass --skip-invalid (in a train sft config: skip_invalid: true) to write bad rows to a "
    "rejects file."
)


def with_skip_hint(e: DataFormatError) -> DataFormatError:
    """``e`` with the hint that ``--skip-invalid`` keeps going."""
    if e.fix and SKIP_HINT in e.fix:
        return e
    fix = f"{e.fix.rstrip('. ')}, or {SKIP_HINT}" if e.fix else SKIP_HINT
    return DataFormatError(e.reason, path=e.path, row=e.row, field=e.field, fix=fix)


def reject_of(e: DataFormatError, path: str, row: int, raw: object) -> Reject:
    """The :class:`Reject` of a row that raised ``e``."""
    reason = e.reason + (f" Fix: {e.fix}" if e.fix else "")
    raw = raw.text if isinstance(raw, BadLine) else raw
    return Reject(path, row, e.field, reason, raw, fix=e.fix)


def _bad_line_error(line: BadLine, path: object, row: int) -> DataFormatError:
    fix = "repair the line so that it holds one JSON object."
    return DataFormatError(f"invalid JSON: {line.message}.", path=path, row=row, fix=fix)


class RecordStream:
    """Records of a source, read lazily: iterate ``(row, Record | Reject)``.

    ``format``, ``n_rows``, ``n_records`` and ``n_rejected`` fill in as the stream is consumed.
    Rows before the first one whose format is recognised are held back until it is found.
    """

    def __init__(
        self, spec: SpecLike, fmt: str | None = None, *, skip_invalid: bool = False
    ) -> None:
        self.source, self.spec = spec, as_spec(spec)
        fmt = fmt or self.spec.format
        if fmt is not None and fmt not in FORMATS:
            raise DataFormatError(
                f"unknown format '{fmt}'.", fix=f"use one of: {', '.join(FORMATS)}."
            )
        # errors carry the path as given (a Path stays a Path); rejects its text
        self.where: object = spec if isinstance(spec, str | Path) else source_name(self.spec)
        self.path = str(self.where)
        self.format: str | None = fmt
        self.skip_invalid = skip_invalid
        self.n_rows = self.n_records = self.n_rejected = 0

    def __iter__(self) -> Iterator[tuple[int, Record | Reject]]:
        held: list[tuple[int, Any]] = []
        for row, value in iter_source_rows(self.source):
            self.n_rows += 1
            if self.format is None:
                held.append((row, value))
                self.format = self._detect(row, value)
                if self.format is None:
                    continue
                for r, v in held:
                    yield r, self._parse(r, v)
                held = []
                continue
            yield row, self._parse(row, value)
        if held:  # no row has a recognisable format
            self._no_format(held)

    def _detect(self, row: int, value: Any) -> str | None:
        if isinstance(value, BadLine):
            return None
        try:
            return detect_format(value, path=self.where, row_no=row)
        except DataFormatError as e:
            if not self.skip_invalid:
                raise with_skip_hint(e) from e
            return None

    def _no_format(self, held: list[tuple[int, Any]]) -> None:
        objects = [(r, v) for r, v in held if not isinstance(v, BadLine)]
        if objects:  # only reached with skip_invalid: no row matched a format
            detect_format(objects[0][1], path=self.where, row_no=objects[0][0])  # raises
        if not self.skip_invalid:
            raise with_skip_hint(_bad_line_error(held[0][1], self.where, held[0][0]))
        msg = "no row is valid JSON, so there is nothing to read."
        raise DataFormatError(msg, path=self.where, fix="repair the file.")

    def _parse(self, row: int, value: Any) -> Record | Reject:
        assert self.format is not None
        try:
            if isinstance(value, BadLine):
                raise _bad_line_error(value, self.where, row)
            record = parse_row(value, self.format, path=self.where, row_no=row)
        except DataFormatError as e:
            if not self.skip_invalid:
                raise with_skip_hint(e) from e
            self.n_rejected += 1
            return reject_of(e, self.path, row, value)
        self.n_records += 1
        return record


def load_dataset(
    spec: SpecLike, fmt: str | None = None, *, skip_invalid: bool = False
) -> LoadResult:
    """Read every row of ``spec`` (a path, a :class:`~instructkit.data.sources.DatasetSpec` or
    its keys) into records of format ``fmt`` (the spec's, or auto-detected when None).

    Without ``skip_invalid`` the first bad row raises DataFormatError (source, row, field,
    fix); with it, bad rows become :class:`Reject` entries, so rows in = records + rejects.
    """
    stream = RecordStream(spec, fmt, skip_invalid=skip_invalid)
    records: list[Record] = []
    rejects: list[Reject] = []
    rows: list[int] = []
    for row, item in stream:
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            records.append(item)
            rows.append(row)
    assert stream.format is not None
    return LoadResult(records, stream.format, rejects, stream.n_rows, rows, source=stream.path)
