"""Write rows as JSONL, a JSON array, CSV/TSV, Parquet or a ``save_to_disk`` folder, as they come.

``write_dataset_rows(rows, path)`` picks the kind from the path (``.jsonl``/``.ndjson`` or any
other extension: JSONL; ``.json``: a JSON array; ``.csv``/``.tsv``: CSV/TSV; ``.parquet``:
Parquet; no extension: a ``datasets`` ``save_to_disk`` folder) or from ``file_type``. Rows are
never all held in memory: JSON and JSONL are written row by row; CSV/TSV, Parquet and
``save_to_disk`` go through a temporary JSONL file (one pass to learn the columns or a schema
that fits every row, one to write). In CSV/TSV the columns are the union of the rows' keys in
order of first appearance; a list or object (``messages``, ``conversations``, ``history``, a
nested metadata value) is a cell of JSON text, a number or boolean its JSON text, and a missing
key or null an empty cell; :mod:`instructkit.data.sources` reads the JSON cells of the format
fields back. Every kind is written atomically: a temporary file or folder beside the target
replaces it once complete. Usage::

    n = write_dataset_rows(({"instruction": q, "output": a} for q, a in pairs), "out.parquet")
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from instructkit.data.sources import decode_cell
from instructkit.errors import DataFormatError
from instructkit.io import write_atomic

__all__ = ["OUTPUT_TYPES", "cell_text", "output_type_of", "write_dataset_rows"]

OutputType = Literal["jsonl", "json", "csv", "tsv", "parquet", "disk"]
OUTPUT_TYPES: tuple[OutputType, ...] = ("jsonl", "json", "csv", "tsv", "parquet", "disk")
_BATCH_ROWS = 1024


def output_type_of(path: str | Path, file_type: str | None = None) -> OutputType:
    """The kind of file ``path`` names: given, or from its extension (none: save_to_disk)."""
    if file_type is not None:
        if file_type not in OUTPUT_TYPES:
            fix = f"write one of: {', '.join(OUTPUT_TYPES)}."
            raise DataFormatError(f"cannot write file type '{file_type}'.", path=path, fix=fix)
        return file_type
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".json", ".csv", ".tsv"):
        return "json" if suffix == ".json" else ("csv" if suffix == ".csv" else "tsv")
    return "disk" if not suffix else "jsonl"


def write_dataset_rows(
    rows: Iterable[dict[str, Any]], path: str | Path, file_type: str | None = None
) -> int:
    """Write ``rows`` to ``path`` (see the module doc); returns the number written."""
    kind = output_type_of(path, file_type)
    counter = _Counter(rows)
    if kind == "jsonl":
        write_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in counter))
    elif kind == "json":
        write_atomic(path, _json_array(counter))
    elif kind in ("csv", "tsv"):
        _write_delimited(counter, Path(path), "\t" if kind == "tsv" else ",")
    else:
        _write_columnar(counter, Path(path), kind)
    return counter.n


class _Counter:
    """Iterates rows once, counting them."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows, self.n = rows, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            self.n += 1
            yield row


def _json_array(rows: Iterable[Any]) -> Iterator[str]:
    yield "["
    for i, row in enumerate(rows):
        yield ("\n" if i == 0 else ",\n") + json.dumps(row, ensure_ascii=False, indent=2)
    yield "\n]\n"


def _write_delimited(rows: Iterable[dict[str, Any]], path: Path, delimiter: str) -> None:
    """CSV/TSV through a spooled JSONL file: pass one learns the columns, pass two writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        spool = Path(tmp) / "rows.jsonl"
        columns: dict[str, None] = {}  # ordered set: first appearance
        with spool.open("w", encoding="utf-8") as f:
            for row in rows:
                columns.update(dict.fromkeys(row))
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_atomic(path, _delimited_lines(spool, list(columns), delimiter))


def _delimited_lines(spool: Path, columns: list[str], delimiter: str) -> Iterator[str]:
    buffer = io.StringIO()
    # with "\r\n" as the terminator csv quotes cells holding \r or \n; lines end in \n
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")

    def line(cells: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()[:-2] + "\n"

    yield line(columns)
    with spool.open(encoding="utf-8") as f:
        for text in f:
            row = json.loads(text)
            yield line([cell_text(c, row.get(c)) for c in columns])


def cell_text(column: str, value: Any) -> str:
    """A CSV cell of ``column``: null as empty, anything but a string as JSON text, a string as
    it is unless the reader would decode it (a text that is JSON of a list): then as a JSON
    string literal, which :func:`~instructkit.data.sources.decode_cell` reads back."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if decode_cell(column, value) != value:
        return json.dumps(value, ensure_ascii=False)
    return value


def _write_columnar(rows: Iterable[dict[str, Any]], path: Path, kind: OutputType) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        spool = Path(tmp) / "rows.jsonl"
        schema = _spool(rows, spool, path)
        if kind == "parquet":
            _replace_file(path, lambda target: _write_parquet(spool, schema, target))
        else:
            arrow = Path(tmp) / "rows.arrow"
            _write_arrow_stream(spool, schema, arrow)
            _save_to_disk(arrow, path, Path(tmp))


def _spool(rows: Iterable[dict[str, Any]], spool: Path, target: Path) -> Any:
    """Write rows to a temporary JSONL file; returns an Arrow schema that fits all of them."""
    import pyarrow as pa

    schema = None
    batch: list[dict[str, Any]] = []
    with spool.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            batch.append(row)
            if len(batch) == _BATCH_ROWS:
                schema = _unified(schema, batch, target)
                batch = []
        if batch or schema is None:
            schema = _unified(schema, batch, target)
    return schema if schema is not None else pa.schema([])


def _unified(schema: Any, batch: list[dict[str, Any]], target: Path) -> Any:
    import pyarrow as pa

    try:
        # pa.array infers the union of every row's keys (Table.from_pylist: the first row's)
        found = pa.schema(list(pa.array(batch).type)) if batch else pa.schema([])
        if schema is None:
            return found
        return pa.unify_schemas([schema, found], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise DataFormatError(
            f"the rows do not fit one Arrow schema: {e}.",
            path=target,
            fix="give each field one type in every row (e.g. always a string or always a list), "
            "or write JSONL.",
        ) from e


def _batches(spool: Path, schema: Any, target: Path) -> Iterator[Any]:
    import pyarrow as pa

    batch: list[dict[str, Any]] = []
    with spool.open(encoding="utf-8") as f:
        for line in f:
            batch.append(json.loads(line))
            if len(batch) == _BATCH_ROWS:
                yield _table(batch, schema, target, pa)
                batch = []
    if batch:
        yield _table(batch, schema, target, pa)


def _table(batch: list[dict[str, Any]], schema: Any, target: Path, pa: Any) -> Any:
    try:
        return pa.Table.from_pylist(batch, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        fix = "give each field one type in every row, or write JSONL."
        raise DataFormatError(f"a row does not fit the schema: {e}.", path=target, fix=fix) from e


def _write_parquet(spool: Path, schema: Any, target: Path) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(target, schema) as writer:
        for table in _batches(spool, schema, target):
            writer.write_table(table)


def _write_arrow_stream(spool: Path, schema: Any, target: Path) -> None:
    import pyarrow as pa

    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for table in _batches(spool, schema, target):
            writer.write_table(table)


def _replace_file(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _save_to_disk(arrow: Path, path: Path, tmp: Path) -> None:
    """A ``save_to_disk`` folder of the Arrow stream file, moved into place when complete."""
    import datasets

    staged = tmp / "saved"
    datasets.Dataset.from_file(str(arrow), in_memory=False).save_to_disk(str(staged))
    if path.exists():
        if not (path / "state.json").exists() and any(path.iterdir()):
            fix = "write to a new folder, or remove it first."
            raise DataFormatError("the folder exists and is not a dataset.", path=path, fix=fix)
        shutil.rmtree(path)
    os.replace(staged, path)
