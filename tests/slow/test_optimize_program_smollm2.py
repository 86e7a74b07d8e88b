"""`optimize program` on a real two-stage program (extract the opinion phrase, then classify
it) with the embedded SmolLM2-135M (marked slow): within budget, and per-stage gains reported
(not that they are positive)."""

import json
import time
from importlib import resources
from pathlib import Path

import pytest
import torch

from instructkit.optimize.program import ProgramOptConfig, run_program_optimization

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parents[2] / "benchmarks/optimizers/two_stage_sentiment.py"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads ran 8x slower per call."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_per_module_search_on_the_embedded_model_keeps_the_budget(tmp_path, one_thread):
    from instructkit.lm.local import LocalLM

    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = [{"text": r["text"], "sentiment": r["answer"]} for r in rows if r["task"] == "sentiment"]
    cfg = ProgramOptConfig(
        program=f"{PROGRAM}:program",
        data=_write(tmp_path / "train.jsonl", rows[6:14]),
        val=_write(tmp_path / "val.jsonl", rows[:3]),
        test=_write(tmp_path / "test.jsonl", rows[3:6]),
        target="sentiment",
        labels=["positive", "negative"],
        budget=24,
        rounds=1,
        candidates=1,
        max_tokens=8,
        out=str(tmp_path / "opt"),
    )
    lm = LocalLM.load("smollm2-135m-instruct")
    start = time.monotonic()
    result = run_program_optimization(cfg, lm=lm, progress=False)
    elapsed = time.monotonic() - start

    assert result.calls["task"] <= 24
    assert result.calls["test"] == 2 * 2 * 3  # initial and best, 2 stages, 3 items
    assert [s.name for s in result.stages] == ["extract", "classify"]
    saved = json.loads((tmp_path / "opt" / "result.json").read_text())
    for stage in saved["stages"]:
        assert set(stage) >= {"name", "instruction_before", "instruction_after", "val_gain"}
        assert stage["val_gain"] is None or -1.0 <= stage["val_gain"] <= 1.0
    assert result.best.val >= result.initial.val
    assert elapsed < 90, f"took {elapsed:.0f} s"
    print(json.dumps(saved, indent=1))
