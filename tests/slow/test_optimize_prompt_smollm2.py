"""`optimize prompt` on the embedded SmolLM2-135M (marked slow): outputs and budget only."""

import json
import time
from importlib import resources

import pytest

from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization

pytestmark = pytest.mark.slow


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_templates_search_on_the_embedded_model_keeps_the_budget(tmp_path):
    from instructkit.lm.local import LocalLM

    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = [{"text": r["text"], "label": r["answer"]} for r in rows if r["task"] == "sentiment"]
    cfg = PromptOptConfig(
        data=_write(tmp_path / "train.jsonl", rows[24:40]),
        val=_write(tmp_path / "val.jsonl", rows[:12]),
        test=_write(tmp_path / "test.jsonl", rows[12:24]),
        inputs=["text"],
        target="label",
        labels=["positive", "negative"],
        task="classify the sentiment of the text",
        budget=60,
        max_tokens=4,
        out=str(tmp_path / "opt"),
    )
    lm = LocalLM.load("smollm2-135m-instruct")
    start = time.monotonic()
    result = run_prompt_optimization(cfg, lm=lm)
    elapsed = time.monotonic() - start

    assert result.calls["task"] <= 60
    assert result.calls["test"] <= 24
    assert result.best.val >= result.initial.val
    saved = json.loads((tmp_path / "opt" / "result.json").read_text())
    assert set(saved) >= {"initial", "best", "calls", "test_comparison", "wall_s"}
    assert (tmp_path / "opt" / "results.json").exists()
    assert elapsed < 90, f"took {elapsed:.0f} s"
    print(json.dumps(saved, indent=1))
