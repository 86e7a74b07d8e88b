"""Where instruction data comes from: a path or a Hugging Face dataset, read row by row.

A :class:`DatasetSpec` names the source; :func:`iter_source_rows` yields its rows lazily as
``(row, value)`` pairs, so a 1 GB file never becomes 1 GB of Python objects. Every reader of
instructkit (SFT, preference and RL trainers, ``eval run``, ``optimize``, synth seeds, every
``data`` command) takes its rows from here, through :func:`instructkit.data.formats.load_dataset`
or, for readers with their own row schema (prompt rows, seed tasks, eval items), from
:func:`read_source_rows`.

File kinds (``file_type``, detected from the extension when left out):

- ``jsonl`` (``.jsonl``, ``.ndjson``; any other extension whose text does not start with ``[``):
  one JSON value per line, read line by line; ``row`` is the 1-based line number. A line that is
  not JSON (or not UTF-8) comes back as a :class:`~instructkit.io.BadLine` to reject.
- ``json``: an array, streamed element by element (:mod:`instructkit.data.json_array`), or an
  object holding one list (or a bare record), read whole; ``row`` is index + 1.
- ``csv`` / ``tsv``: a header line, then one row per record; ``row`` is the 1-based line where
  the record starts. Cells of list-valued fields (``conversations``, ``messages``, ...) may hold
  JSON text (see :func:`decode_cell`). An empty cell of a format field (``instruction``,
  ``output``, ``chosen``, ...) means the field is absent.
- ``parquet``, ``arrow`` (an Arrow IPC file or stream, such as the ``.arrow`` shards of
  ``datasets``), ``disk`` (a ``save_to_disk`` folder) and ``hub`` (``datasets.load_dataset(path,
  subset, split=...)``, for names that are not local paths): read in record batches; ``row`` is
  the 0-based row index, as ``ds[row]`` or ``df.iloc[row]``. A null is an absent field (a
  table's columns are the union of its rows' fields).

``columns`` maps the format's fields to the source's columns, like LLaMA-Factory's
``dataset_info`` ``columns``: ``{instruction: question, output: answer}``, or with its names
``{prompt: question, response: answer}`` (for Alpaca, ``prompt``/``query``/``response`` are
``instruction``/``input``/``output``). Usage::

    for row, value in iter_source_rows("train.parquet"):
        ...
    spec = DatasetSpec(path="data/qa.csv", columns={"prompt": "question", "response": "answer"})
"""

from __future__ import annotations

import csv
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from instructkit.data.json_array import is_json_array, iter_json_array
from instructkit.errors import ConfigError, DataFormatError
from instructkit.io import BadLine, read_rows

__all__ = [
    "FILE_TYPES",
    "DatasetSpec",
    "SourceField",
    "SpecLike",
    "as_spec",
    "decode_cell",
    "file_type_of",
    "hub_reachable",
    "iter_source_rows",
    "looks_like_local_path",
    "missing_source",
    "read_source_rows",
    "source_label",
    "source_name",
]

FILE_TYPES = ("json", "jsonl", "csv", "tsv", "parquet", "arrow", "disk", "hub")
FileType = Literal["json", "jsonl", "csv", "tsv", "parquet", "arrow", "disk", "hub"]
_SUFFIXES: dict[str, FileType] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
# LLaMA-Factory's column names for Alpaca rows, and the other formats' aliases.
_ALIASES: dict[str, dict[str, str]] = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output"},
    "prompt-completion": {"response": "completion"},
    "sharegpt": {"messages": "conversations"},
}
# Fields whose CSV cells may hold JSON text (lists of messages, history pairs).
_JSON_CELLS = frozenset(
    {"conversations", "messages", "history", "prompt", "completion", "chosen", "rejected", "tools"}
)
# Fields of the formats: in CSV an empty cell of one of them means the field is absent.
_FORMAT_FIELDS = _JSON_CELLS | {"instruction", "input", "output", "system"}
_BATCH_ROWS = 512


class DatasetSpec(BaseModel):
    """A dataset to read: a file, a folder or a Hugging Face dataset name, and how to read it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a file, a save_to_disk folder, or a Hugging Face dataset name")
    format: str | None = Field(
        default=None,
        description="alpaca, sharegpt, messages, prompt-completion or preference "
        "(auto-detected from the first row when left out)",
    )
    file_type: FileType | None = Field(
        default=None,
        description="json, jsonl, csv, tsv, parquet, arrow, disk (save_to_disk folder) or hub "
        "(detected from the path when left out)",
    )
    split: str | None = Field(
        default=None, description="the split of a hub dataset or a DatasetDict folder (train)"
    )
    subset: str | None = Field(default=None, description="the config name of a hub dataset")
    columns: dict[str, str] | None = Field(
        default=None, description="format field -> source column, e.g. {instruction: question}"
    )


SpecLike = DatasetSpec | str | Path | Mapping[str, Any]
# The type of a config field that names a dataset: a path (as before) or a full spec (YAML keys
# path/format/file_type/split/subset/columns). Readers take either; see :func:`as_spec`.
SourceField = str | DatasetSpec


def as_spec(spec: SpecLike) -> DatasetSpec:
    """A :class:`DatasetSpec` from a spec, a path, or a mapping of spec keys."""
    if isinstance(spec, DatasetSpec):
        return spec
    if isinstance(spec, str | Path):
        return DatasetSpec(path=str(spec))
    try:
        return DatasetSpec.model_validate(dict(spec))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'spec'}: {err['msg']}" for err in e.errors()
        )
        fix = "give a path, or path plus format/file_type/split/subset/columns."
        raise ConfigError(f"bad dataset spec: {problems}", fix=fix) from e


def missing_source(
    key: str, spec: SpecLike, *, exists: Callable[[Path], bool] = Path.exists
) -> str | None:
    """``"KEY: PATH does not exist"`` when ``spec`` names a local path that is not there (a hub
    name passes: only loading can tell); for the config checks made before a model loads.
    ``exists`` says whether a file is there (a recipe counts the files earlier stages write)."""
    s = as_spec(spec)
    if file_type_of(s) == "hub" or exists(Path(s.path)):
        return None
    return f"{key}: {s.path} does not exist"


def source_label(spec: SpecLike) -> object:
    """How errors cite ``spec``: a path as given (a Path stays a Path), else its source name."""
    return spec if isinstance(spec, str | Path) else source_name(spec)


def source_name(spec: SpecLike) -> str:
    """How rejects and errors name the source: the path (with the split, if any)."""
    s = as_spec(spec)
    return (
        s.path
        if s.split is None or file_type_of(s) not in ("disk", "hub")
        else (f"{s.path}[{s.split}]")
    )


def file_type_of(spec: SpecLike) -> FileType:
    """The file kind of ``spec``: given, from the extension, a folder, or a hub name."""
    s = as_spec(spec)
    if s.file_type is not None:
        return s.file_type
    path = Path(s.path)
    if path.is_dir():
        is_saved = any((path / f).exists() for f in ("dataset_dict.json", "state.json"))
        return "disk" if is_saved else "hub"
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if not path.exists() and _looks_like_hub_name(s.path) and not looks_like_local_path(s.path):
        return "hub"
    return "json" if _starts_with_bracket(path) else "jsonl"


def _looks_like_hub_name(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts)


def looks_like_local_path(name: str) -> bool:
    """Whether ``name`` (that names no existing file) is meant as a local path, not a hub name:
    it starts with ``./``, ``../``, ``/`` or ``~``, has a separator beyond one ``owner/name``
    slash, or names a file in a folder that exists (``data/mydata`` beside a ``data`` folder)."""
    if name.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in name):
        return True
    if name.count("/") > 1:
        return True
    parent = Path(name).parent
    return str(parent) != "." and parent.is_dir()


def _starts_with_bracket(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head.startswith(b"[")


def read_source_rows(spec: SpecLike) -> list[tuple[int, Any]]:
    """Every row of ``spec`` as ``(row, value)`` pairs (for small files; see the module doc)."""
    return list(iter_source_rows(spec))


def iter_source_rows(spec: SpecLike) -> Iterator[tuple[int, Any]]:
    """Rows of ``spec``, lazily, with the column mapping applied; DataFormatError names the
    source when it is missing, unreadable, empty or of another kind."""
    s = as_spec(spec)
    where = source_label(spec)
    n = 0
    mapping = _mapping(s)
    kind = file_type_of(s)
    if kind != "hub" and not Path(s.path).exists():
        raise _missing(s, where)
    try:
        for row, value in _READERS[kind](s):
            n += 1
            yield row, _mapped(value, mapping) if mapping and isinstance(value, dict) else value
    except DataFormatError as e:
        if str(e.path) != s.path or where is e.path:
            raise
        raise DataFormatError(e.reason, path=where, row=e.row, field=e.field, fix=e.fix) from e
    if n == 0:
        fix = "point at a source with at least one row."
        raise DataFormatError("the source holds no rows.", path=where, fix=fix)


def _mapping(s: DatasetSpec) -> dict[str, str]:
    """``columns`` with aliases resolved: field -> column."""
    if not s.columns:
        return {}
    fmt = s.format or _guess_format(s.columns)
    aliases = _ALIASES.get(fmt or "", {})
    return {aliases.get(k, k): v for k, v in s.columns.items()}


def _guess_format(columns: Mapping[str, str]) -> str | None:
    keys = set(columns)
    if keys & {"instruction", "output", "query", "response", "history"}:
        return "alpaca"
    return None


def _mapped(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """``row`` with each mapped column renamed to its field (other columns are kept)."""
    sources = set(mapping.values())
    out = {k: v for k, v in row.items() if k not in sources}
    for target, column in mapping.items():
        if column in row:
            out[target] = row[column]
    return out


# ------------------------------------------------------------------------------- text files


def _missing(s: DatasetSpec, where: object = None) -> DataFormatError:
    return DataFormatError(
        "cannot read the file: no such file or folder.",
        path=s.path if where is None else where,
        fix=f"check the path (a relative path starts at {Path.cwd()}); a Hugging Face dataset "
        "is named owner/name, or set file_type: hub.",
    )


def _json_file(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    if is_json_array(s.path):  # streamed; other JSON documents are read whole
        yield from iter_json_array(s.path)
        return
    try:
        rows = read_rows(s.path)
    except (RecursionError, ValueError) as e:  # nested too deeply; an int of > 4300 digits
        fix = "repair the file, or store it as JSONL so that bad lines can be skipped."
        raise DataFormatError(f"invalid JSON: {e}.", path=s.path, fix=fix) from e
    yield from rows


def _jsonl_file(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    """Lines split at ``\\n`` only (U+2028 may sit unescaped inside JSON strings)."""
    try:
        f = open(s.path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataFormatError(
            f"cannot read the file: {e.strerror or e}.", path=s.path, fix="check the path."
        ) from e
    with f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            yield line_no, _json_line(raw, s.path, line_no)


def _json_line(raw: bytes, path: str, line_no: int) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        return BadLine(text, f"not UTF-8 text (bad byte at column {e.start + 1})")
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        return BadLine(line.rstrip("\r\n"), f"{e.msg} at column {e.colno}")
    except (RecursionError, ValueError) as e:  # nested too deeply; an int of > 4300 digits
        return BadLine(line.rstrip("\r\n"), str(e) or "nested too deeply")


def _csv_file(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    delimiter = "\t" if file_type_of(s) == "tsv" else ","
    try:
        f = open(s.path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataFormatError(
            f"cannot read the file: {e.strerror or e}.", path=s.path, fix="check the path."
        ) from e
    # a long conversation in one JSON cell passes csv's default 128 KiB cell limit
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            yield from _csv_rows(reader, s.path)
        except UnicodeDecodeError as e:
            raise DataFormatError(
                f"the file is not UTF-8 text (after line {reader.line_num}).",
                path=s.path,
                fix="re-save the file as UTF-8.",
            ) from e
        except csv.Error as e:
            raise DataFormatError(
                f"malformed CSV at line {reader.line_num}: {e}.",
                path=s.path,
                row=reader.line_num,
                fix="quote cells that hold the delimiter, quotes or line breaks.",
            ) from e


def _csv_rows(reader: Any, path: str) -> Iterator[tuple[int, Any]]:
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        fix = "start the file with a header line naming the columns."
        raise DataFormatError("the file has no header line.", path=path, row=1, fix=fix)
    start = reader.line_num + 1
    for cells in reader:
        row_no, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            msg = f"{len(cells)} cells for {len(header)} columns"
            yield row_no, BadLine(",".join(cells), msg)
            continue
        yield (
            row_no,
            {
                h: decode_cell(h, c)
                for h, c in zip(header, cells, strict=False)
                if h not in _FORMAT_FIELDS or c  # CSV has no null: an empty cell is absent
            },
        )


def decode_cell(column: str, text: str) -> Any:
    """A CSV cell's value. In a list-valued field (``messages``, ``chosen``, ...) JSON text of a
    list is decoded, as is a message object (``{"from"|"role": ...}``, a ShareGPT pair's
    ``chosen``) and a JSON string literal (how the writer stores a text that would otherwise
    read as one of those); anything else, and every other column, is the text itself."""
    head = text.lstrip()[:1]
    if column not in _JSON_CELLS or head not in ("[", "{", '"'):
        return text
    try:
        value = json.loads(text)
    except (RecursionError, ValueError):
        return text
    if head == "[" or (head == '"' and isinstance(value, str)):
        return value
    is_message = isinstance(value, dict) and ("from" in value or "role" in value)
    return value if is_message else text


# -------------------------------------------------------------------------- columnar sources


def _batched(batches: Iterator[Any], start: int = 0) -> Iterator[tuple[int, Any]]:
    """Rows of pyarrow record batches (or tables), numbered by 0-based row index."""
    row = start
    for batch in batches:
        for value in batch.to_pylist():  # a null is an absent field (columns are a union)
            yield row, {k: v for k, v in value.items() if v is not None}
            row += 1


def _parquet_file(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(s.path).exists():
        raise _missing(s)
    try:
        f = pq.ParquetFile(s.path, pre_buffer=False)  # pre_buffer holds the column chunks
    except (pa.ArrowException, OSError) as e:
        raise DataFormatError(
            f"not a readable Parquet file: {e}.", path=s.path, fix="write it with pyarrow/pandas."
        ) from e
    with f:
        _check_columns(s, f.schema_arrow.names)
        yield from _batched(f.iter_batches(batch_size=_BATCH_ROWS))


def _arrow_file(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa

    if not Path(s.path).exists():
        raise _missing(s)
    source = pa.memory_map(s.path)
    try:
        try:
            reader: Any = pa.ipc.open_file(source)
            batches: Iterator[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
        _check_columns(s, reader.schema.names)
    except (pa.ArrowException, OSError) as e:
        source.close()
        raise DataFormatError(
            f"not a readable Arrow IPC file or stream: {e}.",
            path=s.path,
            fix="write it with pyarrow.ipc or datasets.",
        ) from e
    with source:
        yield from _batched(_rechunked(batches))


def _rechunked(batches: Iterator[Any]) -> Iterator[Any]:
    for batch in batches:
        for start in range(0, batch.num_rows, _BATCH_ROWS):
            yield batch.slice(start, _BATCH_ROWS)


def _disk_folder(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(s.path)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise DataFormatError(
            f"not a save_to_disk folder: {e}.", path=s.path, fix="write it with save_to_disk."
        ) from e
    yield from _dataset_rows(_one_split(loaded, s), s)


_HUB_FIX = (
    "if it is a local file, check the path (a relative path starts at {cwd}); if it is a hub "
    "dataset, check your network (or set HF_HUB_OFFLINE=1 to read it from the datasets cache)."
)
_HUB_CHECK_FIX = (
    "check the name, subset and split and `huggingface-cli login`; or point at a local file or "
    "save_to_disk folder."
)


def _hub_dataset(s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    import datasets

    # without this check an unreachable hub costs ~20 s of retries before the error
    if not _hub_offline() and not hub_reachable():
        raise _unreachable(s, "the hub endpoint does not answer")
    try:
        loaded = datasets.load_dataset(s.path, s.subset, split=s.split)
    except ConnectionError as e:
        raise _unreachable(s, _one_line(e)) from e
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; each becomes one line
        raise DataFormatError(
            f"cannot load the dataset: {_one_line(e)}.",
            path=s.path,
            fix=_HUB_CHECK_FIX,
        ) from e
    yield from _dataset_rows(_one_split(loaded, s), s)


def _one_line(e: Exception) -> str:
    """``Type: message`` on one line, without a closing period."""
    return " ".join(f"{type(e).__name__}: {e}".split()).rstrip(".")


def _unreachable(s: DatasetSpec, why: str) -> DataFormatError:
    return DataFormatError(
        f"not a local path and not reachable on the hub ({why}).",
        path=s.path,
        fix=_HUB_FIX.format(cwd=Path.cwd()),
    )


def _hub_offline() -> bool:
    """Offline mode (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``): datasets reads its cache."""
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint (``HF_ENDPOINT``) accepts a TCP connection within
    ``timeout`` seconds, name lookup included; True behind a proxy, which this check cannot
    see through."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    address = (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
    answer: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    # the socket timeout does not bound the name lookup: a thread with a deadline does
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(answer and answer[0])


def _one_split(loaded: Any, s: DatasetSpec) -> Any:
    """The Dataset of ``s.split`` in a DatasetDict (its only split when none is named)."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    splits = list(loaded)
    if s.split is None and len(splits) == 1:
        return loaded[splits[0]]
    if s.split in loaded:
        return loaded[s.split]
    what = f"no split '{s.split}'" if s.split else f"{len(splits)} splits"
    fix = f"set split to one of: {', '.join(splits)}."
    raise DataFormatError(f"the dataset has {what}.", path=s.path, field="split", fix=fix)


def _dataset_rows(ds: Any, s: DatasetSpec) -> Iterator[tuple[int, Any]]:
    _check_columns(s, list(ds.column_names))
    yield from _batched(ds.with_format("arrow").iter(batch_size=_BATCH_ROWS))


def _check_columns(s: DatasetSpec, names: list[str]) -> None:
    """A mapped column that a columnar source lacks is an error before any row is read."""
    missing = [c for c in _mapping(s).values() if c not in names]
    if missing:
        raise DataFormatError(
            f"column {missing[0]!r} named in columns is not in the source (it has "
            f"{', '.join(repr(n) for n in names)}).",
            path=source_name(s),
            field="columns",
            fix="map each field to one of the source's columns.",
        )


_READERS = {
    "json": _json_file,
    "jsonl": _jsonl_file,
    "csv": _csv_file,
    "tsv": _csv_file,
    "parquet": _parquet_file,
    "arrow": _arrow_file,
    "disk": _disk_folder,
    "hub": _hub_dataset,
}
