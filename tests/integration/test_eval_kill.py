"""`instructkit eval run` killed with SIGKILL mid-generation and re-run: nothing lost, nothing
twice, and the same results as a run that was never killed."""

import json
import random
import subprocess
import sys
from importlib import resources

import yaml
from killing import complete_rows, kill_when

ITEMS = resources.files("instructkit.resources").joinpath("demo/items.jsonl")


def _setup(folder, items):
    folder.mkdir()
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    cfg = {
        "systems": [{"name": "tiny", "model": "tiny-random-llama", "template": "chatml"}],
        "tasks": [{"name": "demo", "path": str(folder / "items.jsonl"), "metrics": ["f1"]}],
        "out": str(folder / "results.json"),
        "max_new_tokens": 6,
        "batch_size": 1,  # one unit per chunk: the same generations however the run is cut
    }
    (folder / "eval.yaml").write_text(yaml.safe_dump(cfg))
    return [
        sys.executable,
        "-m",
        "instructkit",
        "eval",
        "run",
        "--config",
        str(folder / "eval.yaml"),
    ]


def _comparable(path):
    res = json.loads(path.read_text())
    res.pop("created")
    res.pop("meta")
    return res


def test_eval_run_killed_and_resumed(tmp_path):
    rows = [json.loads(x) for x in ITEMS.read_text().splitlines()]
    items = [r for r in rows if r["split"] == "test"][:20]
    killed = _setup(tmp_path / "killed", items)
    journal = tmp_path / "killed" / "results.per_item.jsonl"
    stop_at = random.Random().randint(2, len(items) - 5)  # a random point mid-generation
    kill_when(killed, lambda: len(complete_rows(journal)) >= stop_at, timeout=180)
    done_before = len(complete_rows(journal))
    assert 0 < done_before < len(items), "killed too late or too early to test resume"
    subprocess.run(killed, check=True, capture_output=True, timeout=300)
    units = [(r["eval_task"], r["id"], r["system"]) for r in complete_rows(journal)]
    assert len(units) == len(set(units)), "an item was written twice"
    assert {u[1] for u in units} == {r["id"] for r in items}, "an item was lost"

    whole = _setup(tmp_path / "whole", items)
    subprocess.run(whole, check=True, capture_output=True, timeout=300)
    assert complete_rows(journal) == complete_rows(tmp_path / "whole" / "results.per_item.jsonl")
    assert _comparable(tmp_path / "killed" / "results.json") == _comparable(
        tmp_path / "whole" / "results.json"
    )
