"""The one loader: every file kind, row citations, column mapping, writers, streaming, SFT."""

import csv
import json
import socket

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructkit.data import sources
from instructkit.data.formats import load_records, save_records
from instructkit.data.loader import RecordStream, load_dataset
from instructkit.data.records import Conversation, Message, PreferencePair
from instructkit.data.sources import DatasetSpec, file_type_of, iter_source_rows
from instructkit.data.workflows import convert, validate
from instructkit.errors import ConfigError, DataFormatError

ROWS = [{"instruction": f"say {w}", "input": "", "output": w, "id": i} for i, w in enumerate("abc")]


def texts(loaded):
    return [(r.messages[0].content, r.messages[-1].content) for r in loaded.records]


def write_kind(tmp, kind, rows=ROWS):
    """``rows`` written as file kind ``kind``; returns the path."""
    if kind == "jsonl":
        (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp / "d.jsonl"
    if kind == "json":
        (tmp / "d.json").write_text(json.dumps(rows))
        return tmp / "d.json"
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        lines = [sep.join(rows[0])] + [sep.join(str(v) for v in r.values()) for r in rows]
        (tmp / f"d.{kind}").write_text("\n".join(lines) + "\n")
        return tmp / f"d.{kind}"
    table = pa.Table.from_pylist(rows)
    if kind == "parquet":
        pq.write_table(table, tmp / "d.parquet")
        return tmp / "d.parquet"
    if kind == "arrow-file":
        with pa.OSFile(str(tmp / "d.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        return tmp / "d.arrow"
    if kind == "arrow-stream":
        with pa.OSFile(str(tmp / "d.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
            w.write_table(table)
        return tmp / "d.arrow"
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "disk"))
    return tmp / "disk"


KINDS = ["jsonl", "json", "csv", "tsv", "parquet", "arrow-file", "arrow-stream", "disk"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_kind_reads_the_same_records(tmp_path, kind):
    loaded = load_dataset(write_kind(tmp_path, kind))
    assert loaded.format == "alpaca" and loaded.n_rows == 3 and loaded.rejects == []
    assert texts(loaded) == [("say a", "a"), ("say b", "b"), ("say c", "c")]
    columnar = kind in ("parquet", "arrow-file", "arrow-stream", "disk")
    first = {"jsonl": 1, "json": 1, "csv": 2, "tsv": 2}.get(kind, 0)
    assert loaded.row_numbers == [first, first + 1, first + 2]
    assert columnar == (loaded.row_numbers[0] == 0)  # row index for columnar sources


def test_rejects_cite_the_source_row_of_each_kind(tmp_path):
    rows = [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    loaded = load_dataset(tmp_path / "d.parquet", skip_invalid=True)
    assert [(r.row, r.field) for r in loaded.rejects] == [(1, "output")]
    assert loaded.rejects[0].path == str(tmp_path / "d.parquet") and loaded.rejects[0].fix
    # a CSV record spanning two lines: the next record's row is the line where it starts
    (tmp_path / "d.csv").write_text('instruction,output\n"two\nlines",a\nq,\n')
    with pytest.raises(DataFormatError) as e:
        load_dataset(tmp_path / "d.csv")
    assert (e.value.row, e.value.field) == (4, "output") and "--skip-invalid" in str(e.value)


def test_csv_cells_of_list_fields_hold_json_and_extra_cells_are_rejected(tmp_path):
    conv = json.dumps([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}])
    path = tmp_path / "d.csv"
    path.write_text('conversations,id\n"' + conv.replace('"', '""') + '",1\n"[]",2,extra\n')
    loaded = load_dataset(path, skip_invalid=True)
    assert texts(loaded) == [("hi", "yo")] and loaded.records[0].metadata == {"id": "1"}
    assert [r.row for r in loaded.rejects] == [3] and "3 cells for 2 columns" in loaded.rejects[
        0
    ].reason


@pytest.mark.parametrize(
    "columns",
    [{"prompt": "question", "response": "answer"}, {"instruction": "question", "output": "answer"}],
)
def test_column_mapping_llama_factory_names_and_format_fields(tmp_path, columns):
    rows = [{"question": "q1", "answer": "a1", "id": 7}]
    (tmp_path / "qa.jsonl").write_text(json.dumps(rows[0]) + "\n")
    loaded = load_dataset({"path": str(tmp_path / "qa.jsonl"), "columns": columns})
    assert texts(loaded) == [("q1", "a1")] and loaded.records[0].metadata == {"id": 7}


def test_a_mapped_column_missing_from_a_columnar_source_is_one_error(tmp_path):
    path = write_kind(tmp_path, "parquet")
    with pytest.raises(DataFormatError, match="column 'question' named in columns") as e:
        load_dataset(DatasetSpec(path=str(path), columns={"prompt": "question"}))
    assert e.value.field == "columns" and "'instruction'" in str(e.value)


def test_bad_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="bad dataset spec: colums"):
        load_dataset({"path": "x.jsonl", "colums": {}})


def test_dataset_dict_folder_needs_a_split_when_it_has_several(tmp_path):
    train = datasets.Dataset.from_list(ROWS)
    test = datasets.Dataset.from_list(ROWS[:1])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataFormatError, match="2 splits") as e:
        load_dataset(tmp_path / "dd")
    assert "train, test" in e.value.fix
    assert load_dataset({"path": str(tmp_path / "dd"), "split": "test"}).n_rows == 1


def test_hub_names_go_to_datasets_load_dataset(monkeypatch):
    calls = []

    def fake(name, subset, split=None):
        calls.append((name, subset, split))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setattr(sources, "hub_reachable", lambda: True)
    assert file_type_of("tatsu-lab/alpaca") == "hub"
    spec = {"path": "tatsu-lab/alpaca", "subset": "default", "split": "train[:3]"}
    loaded = load_dataset(spec)
    assert calls == [("tatsu-lab/alpaca", "default", "train[:3]")] and len(loaded.records) == 3

    def offline(name, subset, split=None):
        raise ConnectionError("no network\n(retried 5 times)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataFormatError, match="not reachable on the hub .ConnectionError") as e:
        load_dataset("tatsu-lab/alpaca")
    assert "\n" not in str(e.value) and "no network (retried 5 times)" in str(e.value)

    def missing(name, subset, split=None):
        raise FileNotFoundError("no such dataset")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(DataFormatError, match="cannot load the dataset: FileNotFoundError"):
        load_dataset("tatsu-lab/alpaca")


@pytest.mark.parametrize(
    "name",
    ["data/mydata", "./mydata", "/nowhere/mydata", "~/mydata", "a/b/c", "../mydata"],
)
def test_a_missing_local_path_fails_at_once_without_the_hub(tmp_path, monkeypatch, name):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sources, "hub_reachable", lambda: calls.append("probe") or True)
    assert sources.looks_like_local_path(name)
    with pytest.raises(DataFormatError, match="no such file or folder") as e:
        load_dataset(name)
    assert calls == [] and str(tmp_path) in (e.value.fix or "") and e.value.path == name


def test_an_unreachable_hub_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no 'owner' folder here: owner/name is a hub name
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    assert file_type_of("owner/name") == "hub" and not sources.looks_like_local_path("owner/name")
    with pytest.raises(DataFormatError, match="not a local path and not reachable on the hub") as e:
        load_dataset("owner/name")
    assert calls == [] and "HF_HUB_OFFLINE" in (e.value.fix or "")
    assert "\n" not in str(e.value)
    # offline mode skips the check: datasets reads its cache (here: the fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(ROWS))
    assert len(load_dataset("owner/name").records) == len(ROWS)


def test_hub_reachable_answers_false_quickly_for_a_closed_port(monkeypatch):
    from huggingface_hub import constants

    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    with socket.socket() as s:  # a port bound but not listening refuses connections
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert sources.hub_reachable(timeout=1.0) is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert sources.hub_reachable() is True


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ""])
def test_writers_round_trip(tmp_path, suffix):
    loaded = load_dataset(write_kind(tmp_path, "jsonl"))
    out = tmp_path / f"out{suffix}"
    save_records(loaded.records, out, "messages")
    back = load_dataset(out)
    assert back.format == "messages" and texts(back) == texts(loaded)
    assert [r.metadata["id"] for r in back.records] == [0, 1, 2]
    if suffix == "":
        assert (out / "state.json").exists() and file_type_of(out) == "disk"


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca", "preference"])
def test_csv_and_tsv_writers_round_trip(tmp_path, suffix, fmt):
    """Nested fields (messages, conversations, a ShareGPT pair's chosen turn) are JSON text in a
    cell; texts that would read as JSON are stored as JSON strings; metadata comes back as text."""
    tricky = ["[1, 2] is a list", '"quoted"', "a,b\tc\r\nd", '{"from": "gpt"}', " x "]
    convs = [
        Conversation([Message("user", t), Message("assistant", f"{t}!")], {"id": i})
        for i, t in enumerate(tricky)
    ]
    pairs = [
        PreferencePair([Message("user", t)], f"{t} good", '["bad"]', {"id": i})
        for i, t in enumerate(tricky)
    ]
    records = pairs if fmt == "preference" else convs
    out = tmp_path / f"o{suffix}"
    save_records(records, out, fmt)
    back = load_dataset(out, fmt)
    assert [r.metadata.pop("id") for r in back.records] == [str(i) for i in range(len(tricky))]
    for r in records:
        r.metadata.pop("id")
    assert back.records == records
    header = out.read_text().splitlines()[0]
    assert header.split("\t" if suffix == ".tsv" else ",")[-1] == "id"
    if fmt == "messages":  # one JSON cell per row, readable by any CSV tool
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        assert json.loads(rows[0]["messages"])[1] == {
            "role": "assistant",
            "content": "[1, 2] is a list!",
        }


def test_parquet_writer_refuses_fields_of_two_types(tmp_path):
    messages = [Message("user", "q"), Message("assistant", "a")]
    convs = [Conversation(messages, {"tag": "x"}), Conversation(messages, {"tag": [1, 2]})]
    with pytest.raises(DataFormatError, match="do not fit one Arrow schema"):
        save_records(convs, tmp_path / "o.parquet", "messages")
    assert not (tmp_path / "o.parquet").exists()


def test_record_stream_is_lazy_and_counts(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{broken\n" + json.dumps(ROWS[1]) + "\n")
    stream = RecordStream(path)
    it = iter(stream)
    row, first = next(it)  # the bad line further on is not read yet
    assert row == 1 and isinstance(first, Conversation) and stream.n_rows == 1
    with pytest.raises(DataFormatError, match=r"d.jsonl:2: invalid JSON"):
        next(it)


def test_validate_and_convert_stream_rejects_to_a_file(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(ROWS[0]), "{broken", json.dumps({"instruction": "q"}), json.dumps(ROWS[1])]
    path.write_text("\n".join(lines) + "\n")
    r = validate(path, skip_invalid=True)
    assert (r.n_rows, r.n_valid, r.n_rejected) == (4, 2, 2)
    rejects = [json.loads(x) for x in r.rejects_path.read_text().splitlines()]
    assert [(x["row"], x["field"]) for x in rejects] == [(2, None), (3, "output")]
    assert set(rejects[0]) == {"path", "row", "field", "reason", "raw", "fix"}
    c = convert(path, tmp_path / "o.parquet", "sharegpt", skip_invalid=True)
    assert (c.n_rows, c.n_written, c.n_rejected) == (4, 2, 2)
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 2


def test_load_records_is_the_loader(tmp_path):
    path = write_kind(tmp_path, "parquet")
    assert texts(load_records(path)) == texts(load_dataset(path))


def test_missing_and_unreadable_sources_are_one_line_errors(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read the file"):
        load_dataset(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        load_dataset(tmp_path / "bad.parquet")
    (tmp_path / "bad.arrow").write_text("not arrow")
    with pytest.raises(DataFormatError, match="not a readable Arrow"):
        load_dataset(tmp_path / "bad.arrow")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataFormatError, match="no header"):
        load_dataset(tmp_path / "e.csv")


def test_jsonl_rows_are_read_line_by_line_with_bad_utf8_rejected(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"instruction": "q", "output": "\xff"}\n' + json.dumps(ROWS[0]).encode() + b"\n"
    )
    loaded = load_dataset(path, skip_invalid=True)
    assert [r.row for r in loaded.rejects] == [1] and "not UTF-8" in loaded.rejects[0].reason
    assert list(iter_source_rows(path))[1][0] == 2


def test_mixed_sft_and_preference_rows_survive_parquet_and_csv(tmp_path):
    """A table's columns are the union of its rows' fields: a null or an empty cell of a list
    field is an absent field, so an SFT row beside a preference row stays an SFT row."""
    rows = [
        {"instruction": "q", "output": "a"},
        {"instruction": "q", "chosen": "good", "rejected": "bad"},
    ]
    loaded = load_dataset(write_kind(tmp_path, "jsonl", rows))
    save_records(loaded.records, tmp_path / "o.parquet", "alpaca")
    back = load_dataset(tmp_path / "o.parquet")
    assert [type(r).__name__ for r in back.records] == ["Conversation", "PreferencePair"]
    (tmp_path / "m.csv").write_text("instruction,output,chosen,rejected\nq,a,,\nq,,good,bad\n")
    back = load_dataset(tmp_path / "m.csv", skip_invalid=True)
    assert [type(r).__name__ for r in back.records] == ["Conversation", "PreferencePair"]


def test_json_arrays_are_streamed_and_a_bad_element_is_named_by_index(tmp_path, monkeypatch):
    from instructkit.data import json_array

    monkeypatch.setattr(json_array, "CHUNK_CHARS", 64)  # many chunks for a small file
    path = tmp_path / "d.json"
    good = json.dumps(ROWS * 20, indent=2)
    path.write_text(good)
    loaded = load_dataset(path)
    assert len(loaded.records) == 60 and loaded.row_numbers == list(range(1, 61))
    broken = good[:-2].rstrip().removesuffix("}") + ', "output": }\n]'  # the last element
    path.write_text(broken)
    stream = iter(RecordStream(path))
    assert next(stream)[0] == 1  # rows come before the bad element is read
    with pytest.raises(DataFormatError) as e:
        load_dataset(path)
    assert e.value.row == 60 and "array element at index 59" in str(e.value)
    line = broken[: broken.rindex("}")].count("\n") + 1
    assert f"(line {line}, column" in str(e.value) and "\n" not in str(e.value)
    path.write_text("[" + json.dumps(ROWS[0]) + " " + json.dumps(ROWS[1]) + "]")
    with pytest.raises(DataFormatError, match=r"d.json:1: expected ',' or ']' after array elem"):
        load_dataset(path)
