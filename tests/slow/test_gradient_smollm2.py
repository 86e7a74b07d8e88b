"""Gradient-based search pieces on the embedded SmolLM2-135M (marked slow): the prompt cut
around the instruction under its chat template (system prompt included), readable words, and a
soft prompt that saves, loads and generates."""

import json
from importlib import resources

import pytest

from instructkit.optimize.gradient import (
    GradientSettings,
    prompt_items,
    readable_token_mask,
    train_soft_prompt,
)
from instructkit.optimize.task import InstructionTask

pytestmark = pytest.mark.slow

INSTRUCTION = "Classify the sentiment of the text. Answer with one of: positive, negative."


def test_gradient_pieces_on_the_embedded_model(tmp_path):
    from instructkit.lm.base import ChatRequest
    from instructkit.lm.local import LocalLM

    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = [{"text": r["text"], "label": r["answer"]} for r in rows if r["task"] == "sentiment"]
    task = InstructionTask(("text",), "label", ("positive", "negative"))
    lm = LocalLM.load("smollm2-135m-instruct", device="cpu")
    items = prompt_items(lm, task, INSTRUCTION, task.examples(rows[:2]))
    ids = lm.tokenizer(INSTRUCTION, add_special_tokens=False)["input_ids"]
    whole = lm.tokenizer.decode([*items[0].before, *ids, *items[0].after])
    assert whole.index("<|im_start|>system") < whole.index(INSTRUCTION)
    answer = lm.tokenizer.decode([t for t in items[0].after_labels if t != -100])
    assert answer.startswith(rows[0]["label"])

    mask = readable_token_mask(lm.tokenizer)
    for word in (" sentiment", " positive", " the"):
        assert mask[lm.tokenizer(word, add_special_tokens=False)["input_ids"]].all(), word
    for other in (".", ":", " 2024", "<|im_end|>"):
        got = lm.tokenizer(other, add_special_tokens=False)["input_ids"]
        assert not mask[got].any(), other

    s = GradientSettings(soft_tokens=4, soft_steps=1, soft_batch=2)
    soft = train_soft_prompt(lm, items, INSTRUCTION, s, seed=0)
    soft.model.save_pretrained(str(tmp_path / "soft"))
    loaded = LocalLM.load("smollm2-135m-instruct", adapter=tmp_path / "soft", device="cpu")
    request = ChatRequest.from_messages([{"role": "user", "content": "Hi"}], max_tokens=3)
    assert loaded.complete([request])[0].completion_tokens > 0
