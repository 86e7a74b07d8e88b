"""Property-based tests of every reader: each format (alpaca, sharegpt, messages,
prompt-completion, preference) in each file kind (JSON, JSONL, CSV, Parquet, Arrow), fed valid
and generated malformed rows. The outcome is always a LoadResult or an InstructkitError, never
another exception, and no row is lost: rows in = records out + rejects, and with the format
given every valid row comes out as a record."""

import csv
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructkit.data.loader import load_dataset
from instructkit.data.prompt_rows import load_prompt_rows
from instructkit.data.writers import cell_text
from instructkit.errors import InstructkitError
from instructkit.synth.seeds import load_seed_tasks

SETTINGS = settings(
    max_examples=int(os.environ.get("IK_HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FORMATS = ["alpaca", "sharegpt", "messages", "prompt-completion", "preference"]
FIELDS = ["instruction", "input", "output", "system", "history", "conversations", "messages",
          "prompt", "completion", "chosen", "rejected", "from", "value", "role", "content",
          "train", "weight", "id"]  # fmt: skip

text = st.text(max_size=12)
words = st.text(min_size=1, max_size=12).filter(str.strip)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | text, inner, max_size=4)
    ),
    max_leaves=10,
)
garbage_lines = st.text(min_size=1, max_size=20).filter(lambda s: "\n" not in s and s.strip())


@st.composite
def exchanges(draw, user: str, assistant: str, key_role: str, key_text: str) -> list[dict]:
    n = draw(st.integers(1, 3))
    turns = []
    for _ in range(n):
        turns += [
            {key_role: user, key_text: draw(words)},
            {key_role: assistant, key_text: draw(words)},
        ]
    return turns


def valid_rows(fmt: str) -> st.SearchStrategy[dict]:
    if fmt == "alpaca":
        return st.fixed_dictionaries(
            {"instruction": words, "output": words}, optional={"input": text, "system": words}
        )
    if fmt == "sharegpt":
        return st.fixed_dictionaries({"conversations": exchanges("human", "gpt", "from", "value")})
    if fmt == "messages":
        return st.fixed_dictionaries(
            {"messages": exchanges("user", "assistant", "role", "content")}
        )
    if fmt == "prompt-completion":
        return st.fixed_dictionaries({"prompt": words, "completion": words})
    return st.fixed_dictionaries({"prompt": words, "chosen": words, "rejected": words})


def mixed_rows(fmt: str, *, garbage: bool) -> st.SearchStrategy[list[tuple[str, object]]]:
    """Rows tagged valid / bad (any JSON value) / garbage (a line that is not JSON)."""
    one = st.tuples(st.just("valid"), valid_rows(fmt)) | st.tuples(st.just("bad"), json_values)
    if garbage:
        one = one | st.tuples(st.just("garbage"), garbage_lines)
    return st.lists(one, min_size=1, max_size=8)


def check(path: Path, fmt: str | None, n_rows: int, valid_rows_at: list[int]) -> None:
    """The loader's outcome obeys the properties in the module docstring."""
    for skip in (True, False):
        try:
            loaded = load_dataset(path, fmt, skip_invalid=skip)
        except InstructkitError:
            continue
        assert len(loaded.records) + len(loaded.rejects) == n_rows == loaded.n_rows
        cited = [*loaded.row_numbers, *(r.row for r in loaded.rejects)]
        assert len(set(cited)) == len(cited)  # each source row once, as a record or a reject
        if fmt is not None:
            assert set(valid_rows_at) <= set(loaded.row_numbers)
        if not skip:
            assert loaded.rejects == []


@SETTINGS
@given(fmt=st.sampled_from(FORMATS), rows=st.data(), given_fmt=st.booleans())
def test_jsonl_and_json_readers(fmt, rows, given_fmt):
    tagged = rows.draw(mixed_rows(fmt, garbage=True))
    with tempfile.TemporaryDirectory() as tmp:
        lines = [v if tag == "garbage" else json.dumps(v) for tag, v in tagged]
        jsonl = Path(tmp) / "d.jsonl"
        jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
        valid_at = [i + 1 for i, (tag, _) in enumerate(tagged) if tag == "valid"]
        check(jsonl, fmt if given_fmt else None, len(lines), valid_at)
        values = [v for tag, v in tagged if tag != "garbage"]
        doc = Path(tmp) / "d.json"
        doc.write_text(json.dumps(values), encoding="utf-8")
        valid_at = [i + 1 for i, (tag, _) in enumerate(t for t in tagged if t[0] != "garbage")
                    if tag == "valid"]  # fmt: skip
        if values:
            check(doc, fmt if given_fmt else None, len(values), valid_at)


def flat(value: object) -> dict[str, str]:
    """A row as CSV cells: lists and objects as JSON text (strings as the writer stores them)."""
    if not isinstance(value, dict):
        return {"instruction": json.dumps(value)}
    return {str(k): cell_text(str(k), v) for k, v in value.items()}


@SETTINGS
@given(fmt=st.sampled_from(FORMATS), rows=st.data(), tsv=st.booleans())
def test_csv_and_tsv_readers(fmt, rows, tsv):
    tagged = rows.draw(mixed_rows(fmt, garbage=False))
    cells = [flat(v) for _, v in tagged]
    header = sorted({k for c in cells for k in c if k.strip()}) or ["instruction"]
    kept = [(tag, c) for (tag, _), c in zip(tagged, cells, strict=True)
            if any(str(c.get(h, "")).strip() for h in header)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("d.tsv" if tsv else "d.csv")
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, header, extrasaction="ignore", delimiter="\t" if tsv else ",")
            w.writeheader()
            w.writerows(c for _, c in kept)
        if not kept:
            try:
                load_dataset(path, fmt, skip_invalid=True)
            except InstructkitError:
                return
            raise AssertionError("a CSV without rows loaded")
        # valid rows whose every field survived the header (a key the header lacks is lost)
        valid_at = [
            i for i, (tag, c) in enumerate(kept) if tag == "valid" and set(c) <= set(header)
        ]
        rows_at = _csv_rows(path, "\t" if tsv else ",")
        check(path, fmt, len(kept), [rows_at[i] for i in valid_at])


def _csv_rows(path: Path, delimiter: str) -> list[int]:
    """The line where each data record starts."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader)
        starts, start = [], reader.line_num + 1
        for _ in reader:
            starts.append(start)
            start = reader.line_num + 1
    return starts


maybe_words = st.none() | text | words
columnar_rows = {
    "alpaca": st.fixed_dictionaries(
        {"instruction": maybe_words, "input": maybe_words, "output": maybe_words}
    ),
    "messages": st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.none()
                        | st.sampled_from(["user", "assistant", "system", "tool"]),
                        "content": maybe_words,
                    }
                ),
                max_size=4,
            )
        }
    ),  # fmt: skip
    "preference": st.fixed_dictionaries(
        {"prompt": maybe_words, "chosen": maybe_words, "rejected": maybe_words}
    ),
}


def is_valid(fmt: str, row: dict) -> bool:
    def ok(s):
        return isinstance(s, str) and bool(s.strip())

    if fmt == "alpaca":
        return ok(row["instruction"]) and ok(row["output"])
    if fmt == "preference":
        return all(ok(row[k]) for k in ("prompt", "chosen", "rejected"))
    messages = (
        row["messages"][1:]
        if row["messages"][:1] and row["messages"][0]["role"] == "system"
        else row["messages"]
    )
    roles = [m["role"] for m in messages]
    n = len(roles)
    alternating = roles == ["user", "assistant"] * (n // 2) and n >= 2
    system_ok = all(isinstance(m["content"], str) for m in row["messages"][:1])
    return alternating and system_ok and all(ok(m["content"]) for m in messages)


@SETTINGS
@given(fmt=st.sampled_from(sorted(columnar_rows)), rows=st.data(), kind=st.sampled_from(
    ["parquet", "arrow-file", "arrow-stream"]))  # fmt: skip
def test_parquet_and_arrow_readers(fmt, rows, kind):
    values = rows.draw(st.lists(columnar_rows[fmt], min_size=1, max_size=8))
    table = pa.Table.from_pylist(values)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("d.parquet" if kind == "parquet" else "d.arrow")
        if kind == "parquet":
            pq.write_table(table, path, row_group_size=3)
        else:
            new = pa.ipc.new_file if kind == "arrow-file" else pa.ipc.new_stream
            with pa.OSFile(str(path), "wb") as f, new(f, table.schema) as w:
                for batch in table.to_batches(max_chunksize=3):
                    w.write_batch(batch)
        valid_at = [i for i, v in enumerate(values) if is_valid(fmt, v)]
        check(path, fmt, len(values), valid_at)
        check(path, None, len(values), [])


@SETTINGS
@given(data=st.binary(max_size=200), suffix=st.sampled_from(
    [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt"]))  # fmt: skip
def test_any_bytes_give_a_result_or_an_instructkit_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(data)
        for reader in (
            lambda: load_dataset(path, skip_invalid=True),
            lambda: load_dataset(path),
            lambda: load_prompt_rows(path, skip_invalid=True),
            lambda: load_seed_tasks(path, skip_invalid=True),
        ):
            try:
                reader()
            except InstructkitError:
                pass


@SETTINGS
@given(
    rows=st.lists(
        st.sampled_from(FORMATS).flatmap(lambda f: st.tuples(st.just(f), valid_rows(f))),
        min_size=1,
        max_size=6,
    ),
    target=st.sampled_from(["alpaca", "sharegpt", "messages"]),
)
def test_columnar_writers_lose_nothing_that_jsonl_keeps(rows, target):
    """Records written as Parquet, save_to_disk, CSV or TSV read back as they do from JSONL."""
    from instructkit.data.formats import parse_row, save_records

    records = [parse_row(row, fmt) for fmt, row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        names = ("o.jsonl", "o.parquet", "o_disk", "o.csv", "o.tsv")
        outs = [Path(tmp) / name for name in names]
        for out in outs:
            save_records(records, out, target)
        back = [load_dataset(out, target).records for out in outs]
        assert len(back[0]) == len(records)
        for name, other in zip(names[1:], back[1:], strict=True):
            assert other == back[0], name


@SETTINGS
@given(
    values=st.lists(json_values, max_size=8),
    indent=st.sampled_from([None, 0, 2]),
    chunk=st.integers(1, 40),
    cut=st.integers(0, 10_000),
    noise=st.sampled_from(["", "x", "]", ",", "}", '"', "\ufeff", "\x00"]),
)
def test_json_array_streaming_reader(values, indent, chunk, cut, noise):
    """The streamed array gives json.loads' elements for any chunk size, numbered index + 1; a
    cut or corrupted array gives its first elements and then one DataFormatError, never another
    exception or a wrong element."""
    from instructkit.data.json_array import iter_json_array
    from instructkit.errors import DataFormatError

    doc = json.dumps(values, indent=indent)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.json"
        path.write_text(doc, encoding="utf-8")
        assert list(iter_json_array(path, chunk_chars=chunk)) == [
            (i + 1, v) for i, v in enumerate(values)
        ]
        broken = doc[: cut % (len(doc) + 1)] + noise
        path.write_text(broken, encoding="utf-8")
        got: list[tuple[int, object]] = []
        try:
            got.extend(iter_json_array(path, chunk_chars=chunk))
        except DataFormatError as e:
            assert e.row is None or 1 <= e.row <= len(got) + 1
            assert "\n" not in str(e)
            # elements before the cut are the original ones (the last may be a cut number)
            expected = [(i + 1, v) for i, v in enumerate(values)]
            assert got[:-1] == expected[: max(len(got) - 1, 0)]
        else:
            assert [v for _, v in got] == json.loads(broken.lstrip("\ufeff"))
