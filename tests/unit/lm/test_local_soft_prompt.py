"""LocalLM with a PEFT prompt-tuning adapter (a soft prompt): answers do not depend on padding."""

import pytest
import torch
from peft import PromptTuningConfig, TaskType, get_peft_model

from instructkit.lm.base import ChatRequest
from instructkit.lm.local import LocalLM
from instructkit.models import TINY_MODEL, load_model, peft_checkpointing_warning_ignored


@pytest.fixture(scope="module")
def soft_lm(tmp_path_factory):
    model, _ = load_model(TINY_MODEL)
    with peft_checkpointing_warning_ignored():
        peft_model = get_peft_model(
            model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)
        )
    torch.manual_seed(0)
    with torch.no_grad():  # large virtual tokens, so that where they sit shows in the logits
        peft_model.prompt_encoder["default"].embedding.weight.normal_(0, 3.0)
    folder = tmp_path_factory.mktemp("soft")
    peft_model.save_pretrained(str(folder))
    return LocalLM.load(TINY_MODEL, adapter=folder)


def request(text):
    return ChatRequest.from_messages([{"role": "user", "content": text}], max_tokens=6)


SHORT = request("is 4 even")
LONG = request("is the number 12345 even or odd, tell me now please, and the next one " * 3)


def test_choice_logprobs_of_a_soft_prompt_do_not_depend_on_the_padding(soft_lm):
    # Before the fix PEFT put the virtual tokens before the left padding and dropped the
    # position ids: the short request's log-probabilities moved by ~1e-3 next to a long one.
    [alone] = soft_lm.choice_logprobs([SHORT], "", ["yes", "no"])
    together = soft_lm.choice_logprobs([SHORT, LONG], "", ["yes", "no"])[0]
    assert together == pytest.approx(alone, abs=1e-5)


def test_choice_logprobs_of_a_soft_prompt_match_peft_on_an_unpadded_row(soft_lm):
    choice = "y"  # one token of the tiny tokenizer
    assert len(soft_lm.tokenizer(choice, add_special_tokens=False)["input_ids"]) == 1
    plan = soft_lm._choice_plan(SHORT, "", [choice])
    with torch.no_grad():
        logits = soft_lm.model(input_ids=torch.tensor([plan.context])).logits[0, -1]
    expected = float(logits.float().log_softmax(-1)[plan.tokens[choice][0]])
    [got] = soft_lm.choice_logprobs([SHORT], "", [choice])
    assert got[choice] == pytest.approx(expected, abs=1e-5)


def test_a_soft_prompt_generates_the_same_alone_and_in_a_batch(soft_lm):
    alone = soft_lm.complete([SHORT])[0]
    together = soft_lm.complete([SHORT, LONG])
    assert alone.completion_tokens > 0
    assert together[0].texts == alone.texts
    assert together[1].completion_tokens > 0


def test_served_beside_its_base_a_soft_prompt_is_off_for_the_base(soft_lm, tmp_path):
    """`serve MODEL --adapter NAME=DIR` with a prompt-tuning adapter: the base stays the base."""
    soft_lm.model.save_pretrained(str(tmp_path))
    base, views = LocalLM.load_with_adapters(TINY_MODEL, {"soft": tmp_path})
    plain = LocalLM.load(TINY_MODEL)
    [want] = plain.choice_logprobs([SHORT], "", ["yes"])
    [soft] = soft_lm.choice_logprobs([SHORT], "", ["yes"])
    assert soft["yes"] != pytest.approx(want["yes"], abs=1e-3)  # the soft prompt matters
    assert base.choice_logprobs([SHORT], "", ["yes"])[0] == pytest.approx(want, abs=1e-5)
    assert views["soft"].choice_logprobs([SHORT], "", ["yes"])[0] == pytest.approx(soft, abs=1e-5)
    assert base.complete([SHORT])[0].texts == plain.complete([SHORT])[0].texts
    assert views["soft"].complete([SHORT])[0].texts == soft_lm.complete([SHORT])[0].texts
