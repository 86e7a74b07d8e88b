"""Issue 16's "done when": a Parquet file, a CSV, a save_to_disk folder and a JSONL with a column
mapping each convert, render, train (tiny model) and evaluate through the same loader."""

import csv
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from instructkit.cli.main import cli

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon"]
ROWS = [{"instruction": f"Echo the word {w}.", "input": "", "output": w} for w in WORDS * 2]
MAPPED = [
    {"question": r["instruction"], "answer": r["output"], "id": i} for i, r in enumerate(ROWS)
]
COLUMNS = {"prompt": "question", "response": "answer"}  # LLaMA-Factory's names for Alpaca


def write_parquet(tmp: Path) -> tuple[str, dict | None]:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp / "data.parquet")
    return str(tmp / "data.parquet"), None


def write_csv(tmp: Path) -> tuple[str, dict | None]:
    with (tmp / "data.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        w.writeheader()
        w.writerows(ROWS)
    return str(tmp / "data.csv"), None


def write_disk(tmp: Path) -> tuple[str, dict | None]:
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp / "data"))
    return str(tmp / "data"), None


def write_mapped_jsonl(tmp: Path) -> tuple[str, dict | None]:
    (tmp / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MAPPED))
    return str(tmp / "qa.jsonl"), COLUMNS


def run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize(
    "write", [write_parquet, write_csv, write_disk, write_mapped_jsonl], ids=lambda f: f.__name__
)
def test_each_source_converts_renders_trains_and_evaluates(tmp_path, write):
    src, columns = write(tmp_path)
    flags = [x for k, v in (columns or {}).items() for x in ("--column", f"{k}={v}")]

    r = run("data", "convert", src, "-o", tmp_path / "out.jsonl", "--to", "messages", *flags)
    assert r.exit_code == 0, r.output
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(ROWS) and out[3]["messages"][1]["content"] == ROWS[3]["output"]

    r = run("data", "render", src, "-o", tmp_path / "r.jsonl", "--model", "tiny-random-llama",
            "--template", "chatml", *flags)  # fmt: skip
    assert r.exit_code == 0, r.output
    rendered = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rendered) == len(ROWS) and rendered[0]["trained_text"].strip().startswith("apple")

    spec = {"path": src, **({"columns": columns} if columns else {})}
    sft = {
        "model": "tiny-random-llama",
        "output_dir": str(tmp_path / "sft"),
        "template": "chatml",
        "max_seq_len": 64,
        "datasets": [spec],
        "lora": {"r": 4},
        "train": {"batch_tokens": 128, "epochs": 1, "seed": 0},
    }
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft))
    r = run("train", "sft", "--config", tmp_path / "sft.yaml")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "sft" / "summary.json").read_text())
    assert summary["fit"]["steps"] > 0 and "train: 16 examples" in r.output

    ev = {
        "systems": [{"name": "tuned", "model": "tiny-random-llama", "template": "chatml",
                     "adapter": str(tmp_path / "sft" / "adapter")}],
        "tasks": [{"name": "echo", "kind": "sft", "limit": 4, **spec}],
        "out": str(tmp_path / "eval" / "results.json"),
        "max_new_tokens": 2,
    }  # fmt: skip
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(ev))
    r = run("eval", "run", "--config", tmp_path / "eval.yaml")
    assert r.exit_code == 0, r.output
    per_item = (tmp_path / "eval" / "results.per_item.jsonl").read_text().splitlines()
    refs = [json.loads(x)["reference"] for x in per_item]
    assert refs == [r["output"] for r in ROWS[:4]]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_convert_writes_csv_and_tsv_that_read_back(tmp_path, suffix):
    """`data convert -o OUT.csv`: messages as JSON text in a cell; converting back gives the
    same JSONL rows."""
    src, _ = write_mapped_jsonl(tmp_path)
    flags = [x for k, v in COLUMNS.items() for x in ("--column", f"{k}={v}")]
    r = run("data", "convert", src, "-o", tmp_path / "a.jsonl", "--to", "messages", *flags)
    assert r.exit_code == 0, r.output
    r = run("data", "convert", src, "-o", tmp_path / f"o{suffix}", "--to", "messages", *flags)
    assert r.exit_code == 0, r.output
    with (tmp_path / f"o{suffix}").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    assert list(rows[0]) == ["messages", "id"] and len(rows) == len(ROWS)
    assert json.loads(rows[0]["messages"])[1] == {"role": "assistant", "content": "apple"}
    r = run("data", "convert", tmp_path / f"o{suffix}", "-o", tmp_path / "b.jsonl", "--to",
            "messages")  # fmt: skip
    assert r.exit_code == 0, r.output
    first = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    back = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [b["messages"] for b in back] == [a["messages"] for a in first]
    assert [b["id"] for b in back] == [str(a["id"]) for a in first]  # CSV cells are text
