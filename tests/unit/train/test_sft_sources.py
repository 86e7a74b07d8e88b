"""`train sft` reads every source kind through the loader, before the model loads, and its
rejects cite the source row."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import instructkit.train.sft as sft
from instructkit.cli.main import cli
from instructkit.data.templates import get_template
from instructkit.errors import DataFormatError
from instructkit.models import build_tiny_tokenizer
from instructkit.train.sft import DatasetConfig, SFTConfig, read_source, tokenize_source

SUITE = Path(sft.__file__).parents[1] / "resources" / "demo" / "suite.jsonl"
ITEMS = [json.loads(x) for x in SUITE.read_text("utf-8").splitlines()[:6]]


def write(tmp: Path, name: str, lines: list) -> str:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    (tmp / name).write_text(text)
    return str(tmp / name)


def cfg_of(*datasets: DatasetConfig, **kw) -> SFTConfig:
    return SFTConfig(datasets=list(datasets), model="tiny-random-llama", max_seq_len=64, **kw)


@pytest.mark.parametrize("kind", ["tasks", "text"])
def test_a_bad_line_names_file_and_row_not_a_json_traceback(tmp_path, kind):
    good = ITEMS[0] if kind == "tasks" else {"text": "hello"}
    path = write(tmp_path, "d.jsonl", [good, "", "{broken"])
    spec = DatasetConfig(path=path, kind=kind)
    with pytest.raises(DataFormatError) as e:
        read_source(spec, cfg_of(spec))
    assert (e.value.path, e.value.row) == (path, 3) and "invalid JSON" in str(e.value)
    assert "--skip-invalid" in str(e.value)
    data = read_source(spec, cfg_of(spec, skip_invalid=True))
    assert data.rows == [1] and [(r.path, r.row) for r in data.rejects] == [(path, 3)]


def test_task_items_are_checked_one_by_one_with_their_row(tmp_path):
    bad = {"id": "x", "task": "no-such-task", "text": "t", "answer": "a"}
    path = write(tmp_path, "items.jsonl", [ITEMS[0], ITEMS[1], bad, "[1, 2]"])
    spec = DatasetConfig(path=path, kind="tasks")
    data = read_source(spec, cfg_of(spec, skip_invalid=True))
    assert data.rows == [1, 2] and len(data.conversations) == 2
    assert [r.row for r in data.rejects] == [3, 4] and "no-such-task" in data.rejects[0].reason
    train_only = DatasetConfig(path=path, kind="tasks", split="train")
    kept = read_source(train_only, cfg_of(train_only, skip_invalid=True))
    assert [ITEMS[r - 1]["split"] for r in kept.rows] == ["train"] * len(kept.rows)


def test_tokenizer_rejects_cite_the_source_row_not_the_conversation_index(tmp_path):
    long = {"instruction": "word " * 80, "output": "a"}
    rows = [{"instruction": "q", "output": "a"}, "", "", long]  # the long row is on line 4
    path = write(tmp_path, "d.jsonl", rows)
    spec = DatasetConfig(path=path)
    cfg = cfg_of(spec, skip_invalid=True)
    tok = build_tiny_tokenizer()
    examples, rejects = tokenize_source(
        read_source(spec, cfg), cfg, tok, get_template("chatml", tok)
    )
    assert len(examples) == 1 and [(r.path, r.row, r.field) for r in rejects] == [
        (path, 4, "messages")
    ]
    with pytest.raises(DataFormatError, match=r"d.jsonl:4"):
        cfg.skip_invalid = False
        tokenize_source(read_source(spec, cfg), cfg, tok, get_template("chatml", tok))


def no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the data and config were checked")


def test_bad_data_is_reported_before_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(sft, "load_model", no_model)
    path = write(tmp_path, "d.jsonl", [{"instruction": "q", "output": "a"}, {"instruction": "q"}])
    cfg = cfg_of(DatasetConfig(path=path), output_dir=str(tmp_path / "run"))
    with pytest.raises(DataFormatError, match=r"d.jsonl:2: field 'output'"):
        sft.run_sft(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override,message",
    [
        ("task_mix.zero_shot=lots", "task_mix.zero_shot"),
        ("task_mix.shots=2", "task_mix.shots"),
        ("datasets.0.kind=task", "datasets.0.kind"),
    ],
)
def test_config_problems_are_reported_before_the_model_loads(
    tmp_path, monkeypatch, override, message
):
    monkeypatch.setattr(sft, "load_model", no_model)
    items = write(tmp_path, "items.jsonl", ITEMS)
    cfg = {"model": "tiny-random-llama", "datasets": [{"path": items, "kind": "tasks"}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(
        cli, ["train", "sft", "--config", str(tmp_path / "c.yaml"), "--set", override]
    )
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
