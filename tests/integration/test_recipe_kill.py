"""`instructkit run recipes/tiny.yaml` killed with SIGKILL at a random point and run again: the
finished stages are skipped, the interrupted one resumes (inside the eval stage: from its
journal), and the outputs match a run never killed."""

import json
import random
import subprocess
import sys
from pathlib import Path

from killing import complete_rows, kill_when

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["clean", "filter", "train", "eval", "report"]


def _cmd(out):
    # one generation per chunk: the same answers however the evaluation is cut
    return [sys.executable, "-m", "instructkit", "run", "recipes/tiny.yaml", "--out", str(out),
            "--no-progress", "--set", "stages.eval.config.batch_size=1"]  # fmt: skip


def _stages(out):
    try:  # the manifest is replaced atomically: it is whole or absent
        return json.loads((out / "manifest.json").read_text())["stages"]
    except FileNotFoundError:
        return {}


def _done(out):
    return [n for n, s in _stages(out).items() if s["status"] == "done"]


def _comparable(path):
    res = json.loads(path.read_text())
    res.pop("created")
    res.pop("meta")
    return res


def test_a_killed_recipe_resumes_at_its_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    killed = tmp_path / "killed"
    rng = random.Random()
    # between two stages, as a stage starts, or inside the eval stage after some answers
    point = rng.choice(["between", "starting", "mid-eval"])
    stop_at = rng.randint(1, len(STAGES) - 1) if point != "mid-eval" else STAGES.index("eval")
    answers = rng.randint(2, 150)  # of 2 systems x 87 items
    journal = killed / "stages" / "eval" / "results.per_item.jsonl"

    def ready():
        if point == "mid-eval":
            return len(complete_rows(journal)) >= answers
        if point == "starting":
            return _stages(killed).get(STAGES[stop_at], {}).get("status") == "running"
        return len(_done(killed)) >= stop_at

    kill_when(_cmd(killed), ready, timeout=300)
    finished = _done(killed)
    assert 0 < len(finished) < len(STAGES), "killed too late or too early to test resume"
    if point == "mid-eval":
        assert 0 < len(complete_rows(journal)) < 2 * 87, "killed before or after the answers"

    rerun = subprocess.run(_cmd(killed), capture_output=True, text=True, timeout=600, check=True)
    for stage in STAGES:
        action = "skip: cached" if stage in finished else "run"
        assert f"[{stage}] {action}" in rerun.stdout, (stage, finished, rerun.stdout)
    if point != "between":
        assert f"[{STAGES[stop_at]}] run: resuming an interrupted run" in rerun.stdout
    assert _done(killed) == STAGES
    assert (killed / "report.html").exists()

    whole = tmp_path / "whole"
    subprocess.run(_cmd(whole), capture_output=True, timeout=600, check=True)
    for name in ("clean", "filter"):
        data = f"stages/{name}/data.jsonl"
        assert (killed / data).read_text() == (whole / data).read_text()
    results = "stages/eval/results.json"
    assert _comparable(killed / results) == _comparable(whole / results)
    rows = complete_rows(journal)
    units = [(r["eval_task"], r["id"], r["system"]) for r in rows]
    assert len(units) == len(set(units)) == 2 * 87, "an answer was lost or written twice"
    assert rows == complete_rows(whole / "stages" / "eval" / "results.per_item.jsonl")
