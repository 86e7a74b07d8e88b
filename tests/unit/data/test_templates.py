import pytest

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    ChatTemplate,
    get_template,
    segment_conversation,
)
from instructkit.errors import TemplateError

# The Stanford Alpaca prompts, typed out here independently of the module under test.
STANFORD_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)


def conv(*turns, system=None):
    msgs = [Message("system", system)] if system else []
    for i, t in enumerate(turns):
        msgs.append(Message("user" if i % 2 == 0 else "assistant", t))
    return Conversation(msgs)


def test_alpaca_prompts_are_byte_identical_to_stanford(tiny_tokenizer):
    assert ALPACA_PROMPT_INPUT == STANFORD_INPUT
    assert ALPACA_PROMPT_NO_INPUT == STANFORD_NO_INPUT
    t = get_template("alpaca", tiny_tokenizer)
    with_input = [{"role": "user", "content": "Add.", "input": "2 and 3"}]
    assert t.render(with_input, True) == STANFORD_INPUT.format(instruction="Add.", input="2 and 3")
    no_input = [{"role": "user", "content": "Say hi.", "input": None}]
    assert t.render(no_input, True) == STANFORD_NO_INPUT.format(instruction="Say hi.")
    full = no_input + [{"role": "assistant", "content": "hi", "input": None}]
    assert t.render(full, False) == STANFORD_NO_INPUT.format(instruction="Say hi.") + "hi<|im_end|>"


def test_vicuna_chatml_llama3_strings(tiny_tokenizer):
    c = conv("Hi", "Hello!", "Bye", "See you", system="Be brief.")
    v = get_template("vicuna", tiny_tokenizer).render(c.to_chat(), False)
    assert (
        v == "Be brief. USER: Hi ASSISTANT: Hello!<|im_end|>USER: Bye ASSISTANT: See you<|im_end|>"
    )
    m = get_template("chatml", tiny_tokenizer).render(c.to_chat()[:2], True)
    assert m == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ll = get_template("llama3", tiny_tokenizer).render(c.to_chat()[1:3], False)
    assert ll == (
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
    )


def test_vicuna_default_system(tiny_tokenizer):
    v = get_template("vicuna", tiny_tokenizer).render([{"role": "user", "content": "Hi"}], True)
    assert v.startswith("A chat between a curious user and an artificial intelligence assistant.")
    assert v.endswith(" USER: Hi ASSISTANT: ")


@pytest.mark.parametrize(
    "name,eot",
    [
        ("alpaca", "<|im_end|>"),
        ("vicuna", "<|im_end|>"),
        ("chatml", "<|im_end|>"),
        ("llama3", "<|eot_id|>"),
        ("tokenizer", "<|im_end|>"),
    ],
)
def test_segments_mark_exactly_responses_and_eot(tiny_tokenizer, name, eot):
    c = conv("Hi", "Hello there!", "And 2+2?", "4", system="Be brief.")
    segs = segment_conversation(c, get_template(name, tiny_tokenizer))
    trained = [s.text for s in segs if s.train]
    assert trained == ["Hello there!" + eot, "4" + eot]
    assert [s.turn for s in segs if s.train] == [2, 4]
    full = get_template(name, tiny_tokenizer).render(
        [{"role": m.role, "content": m.content, "input": None} for m in c.messages], False
    )
    assert "".join(s.text for s in segs) == full


def test_response_that_also_appears_in_prompt_is_located_after_prompt(tiny_tokenizer):
    c = conv("Repeat: yes", "yes")
    segs = segment_conversation(c, get_template("chatml", tiny_tokenizer))
    assert [s.text for s in segs if s.train] == ["yes<|im_end|>"]
    assert "Repeat: yes" in segs[0].text


def test_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer):
    def render(messages, add_generation_prompt):
        # Marks the last message specially: earlier renderings are not prefixes of later ones.
        out = "".join(
            f"[{m['role']}{'*' if i == len(messages) - 1 else ''}]{m['content']}"
            for i, m in enumerate(messages)
        )
        return out + ("[assistant]" if add_generation_prompt else "")

    with pytest.raises(TemplateError, match="differently"):
        segment_conversation(conv("a", "b", "c", "d"), ChatTemplate("weird", render, ()))


def test_unknown_template_names_the_choices(tiny_tokenizer):
    with pytest.raises(TemplateError, match="chatml"):
        get_template("mistral", tiny_tokenizer)
