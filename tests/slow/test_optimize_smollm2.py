"""Instruction scoring on the embedded SmolLM2-135M through the DSPy bridge (marked slow)."""

import json
from importlib import resources

import pytest

from instructkit.optimize import CallCounter, InstructionTask, bridge_lm, compare_instructions

pytestmark = pytest.mark.slow

CLASSIFY = "Is the sentiment of this text positive or negative? Answer with one word."
REPEAT = "Repeat the text."


def _sentiment_rows(limit: int) -> list[dict]:
    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for row in rows if row["task"] == "sentiment"][:limit]


def test_two_instructions_give_different_accuracies_through_the_bridge():
    from instructkit.lm.local import LocalLM

    rows = _sentiment_rows(12)
    counter = CallCounter(budget=24)
    lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, max_tokens=6)
    task = InstructionTask(inputs=("text",), target="answer", labels=("positive", "negative"))

    result = compare_instructions(task, [CLASSIFY, REPEAT], rows, lm=lm, n_resamples=2000)

    classify, repeat = result.scores
    assert counter.counts == {"task": 24}
    assert (classify.calls, repeat.calls) == (12, 12)
    assert classify.score >= 0.25  # measured 0.5 on 20 items: it answers "Positive." often
    assert repeat.score == 0.0  # it echoes the text, which names no label
    comparison = result.comparisons[0].comparison
    assert comparison.diff == pytest.approx(repeat.score - classify.score)
    assert comparison.ci_high < 0
