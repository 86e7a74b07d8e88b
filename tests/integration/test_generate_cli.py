"""`instructkit generate` end to end on the tiny model: its output feeds `eval ifeval` and
`eval run` as is, a killed run resumes without losing or repeating a row, and bad names fail
before any model is loaded."""

import json
import random
import subprocess
import sys
from importlib import resources

import pytest
import yaml
from click.testing import CliRunner
from killing import complete_rows, kill_when

from instructkit.cli.main import cli

IFEVAL_ROWS = [
    {
        "key": 100 + k,
        "prompt": f"Prompt {k}: describe a cat in lowercase without commas.",
        "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"],
        "kwargs": [{}, {}],
    }
    for k in range(4)
]
ITEMS = resources.files("instructkit.resources").joinpath("demo/items.jsonl")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_generate_on_ifeval_rows_then_eval_ifeval_reads_the_output(tmp_path):
    data = _jsonl(tmp_path / "ifeval.jsonl", IFEVAL_ROWS)
    out = tmp_path / "responses.jsonl"
    r = run("generate", data, "--lm", "local", "--model", "tiny-random-llama", "--template",
            "chatml", "-o", out, "--max-new-tokens", "8", "--batch-size", "3",
            "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "4 responses generated: 4 rows in" in r.output
    rows = _read(out)
    assert [{k: x[k] for k in IFEVAL_ROWS[0]} for x in rows] == IFEVAL_ROWS
    assert all(x["model"] == "local:tiny-random-llama@chatml" for x in rows)
    assert {x["finish_reason"] for x in rows} <= {"length", "stop"}
    scored = tmp_path / "scored.jsonl"
    r = run("eval", "ifeval", out, "-o", scored)  # no re-join
    assert r.exit_code == 0, r.output
    assert [x["key"] for x in _read(scored)] == [x["key"] for x in IFEVAL_ROWS]
    # eval run reads it too, as the system's responses file (IFEval rows matched on key)
    cfg = {
        "systems": [{"name": "gen", "responses": str(out)}],
        "tasks": [{"name": "ife", "path": str(data), "kind": "ifeval"}],
        "out": str(tmp_path / "eval" / "results.json"),
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    r = run("eval", "run", "--config", tmp_path / "eval.yaml")
    assert r.exit_code == 0, r.output
    per_item = _read(tmp_path / "eval" / "results.per_item.jsonl")
    assert [p["response"] for p in per_item] == [x["response"] for x in rows]


def test_generate_on_task_items_feeds_eval_run(tmp_path):
    items = [json.loads(x) for x in ITEMS.read_text().splitlines()]
    items = [r for r in items if r["split"] == "test" and r["task"] == "sentiment"][:3]
    data = _jsonl(tmp_path / "items.jsonl", items)
    out = tmp_path / "gen.jsonl"
    r = run("generate", data, "--model", "tiny-random-llama", "-o", out, "--max-new-tokens", "4",
            "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = {
        "systems": [{"name": "gen", "responses": str(out)}],
        "tasks": [{"name": "suite", "path": str(data), "metrics": ["exact_match"]}],
        "out": str(tmp_path / "results.json"),
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    r = run("eval", "run", "--config", tmp_path / "eval.yaml")
    assert r.exit_code == 0, r.output
    assert len(_read(tmp_path / "results.per_item.jsonl")) == 3


def test_template_typo_fails_before_the_model_loads(tmp_path, monkeypatch):
    import instructkit.models

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the template name was checked")

    monkeypatch.setattr(instructkit.models, "load_model", no_load)
    data = _jsonl(tmp_path / "ifeval.jsonl", IFEVAL_ROWS)
    r = run("generate", data, "--model", "tiny-random-llama", "--template", "chatlm", "-o",
            tmp_path / "o.jsonl")  # fmt: skip
    assert r.exit_code == 2 and "did you mean 'chatml'" in r.output
    r = run("generate", data, "--model", "tiny-random-llama", "--set", "template=lama3", "-o",
            tmp_path / "o.jsonl")  # fmt: skip
    assert r.exit_code == 1 and "did you mean 'llama3'" in r.output


def test_generate_killed_and_resumed_loses_and_repeats_no_row(tmp_path):
    rows = [{**r, "key": i} for i, r in enumerate(IFEVAL_ROWS * 5)]
    data = _jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "instructkit", "generate", str(data), "--model",
           "tiny-random-llama", "--template", "chatml", "-o", str(out), "--max-new-tokens", "6",
           "--batch-size", "1", "--no-progress"]  # fmt: skip
    stop_at = random.Random().randint(2, len(rows) - 5)
    kill_when(cmd, lambda: len(complete_rows(out)) >= stop_at, timeout=180)
    before = len(complete_rows(out))
    assert 0 < before < len(rows), "killed too late or too early to test resume"
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    assert "written by an earlier run" in done.stdout
    keys = [r["key"] for r in complete_rows(out)]
    assert keys == list(range(len(rows))), "a row was lost or written twice"
    # the same rows as a run that was never killed (greedy decoding)
    whole = tmp_path / "whole.jsonl"
    cmd[cmd.index(str(out))] = str(whole)
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert complete_rows(out) == complete_rows(whole)


@pytest.mark.parametrize("flag", ["--base-url", "--api-key-env", "--concurrency"])
def test_served_only_options_are_refused_for_a_local_model(tmp_path, flag):
    data = _jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    value = "3" if flag == "--concurrency" else "X"
    r = run("generate", data, "--model", "tiny-random-llama", flag, value, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "apply to openai:MODEL only" in r.output
