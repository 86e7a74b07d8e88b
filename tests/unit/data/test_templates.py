import pytest

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    ChatTemplate,
    check_template_name,
    default_system_prompt,
    get_template,
    segment_conversation,
    templates_that_fit,
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


def test_vicuna_chatml_llama3_strings(tiny_tokenizer, llama3_tokenizer):
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
    ll = get_template("llama3", llama3_tokenizer).render(c.to_chat()[1:3], False)
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
def test_segments_mark_exactly_responses_and_eot(tiny_tokenizer, llama3_tokenizer, name, eot):
    tiny_tokenizer = llama3_tokenizer if name == "llama3" else tiny_tokenizer
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


def test_template_whose_markers_the_tokenizer_splits_is_refused_with_the_fix(tiny_tokenizer):
    with pytest.raises(TemplateError) as e:
        get_template("llama3", tiny_tokenizer)
    msg = str(e.value)
    assert "template 'llama3' needs <|start_header_id|> as one token" in msg
    assert "use a template that fits this tokenizer: alpaca, vicuna, chatml, tokenizer" in msg
    assert templates_that_fit(tiny_tokenizer) == ["alpaca", "vicuna", "chatml", "tokenizer"]


def test_template_that_fits_is_accepted(llama3_tokenizer):
    assert "llama3" in templates_that_fit(llama3_tokenizer)
    get_template("llama3", llama3_tokenizer)  # no error


@pytest.mark.parametrize("typo,suggested", [("chatm", "chatml"), ("lama3", "llama3"),
                                            ("tokeniser", "tokenizer")])  # fmt: skip
def test_unknown_template_name_suggests_the_closest(typo, suggested):
    with pytest.raises(TemplateError, match=f"did you mean '{suggested}'"):
        check_template_name(typo)
    with pytest.raises(TemplateError, match="use one of: alpaca, vicuna, chatml, llama3"):
        check_template_name("xyz")
    assert check_template_name("chatml") == "chatml"


def test_default_system_prompt_is_found_in_the_rendering(tiny_tokenizer):
    assert default_system_prompt(get_template("chatml", tiny_tokenizer)) is None
    vicuna = default_system_prompt(get_template("vicuna", tiny_tokenizer))
    assert vicuna is not None and vicuna.startswith("A chat between a curious user")
    default = [{"role": "system", "content": "Be kind."}]

    def render(ms, _):
        ms = ms if ms[0]["role"] == "system" else default + ms
        return "".join(f"[{m['role']}]{m['content']}" for m in ms)

    own = ChatTemplate("tokenizer", render, ())
    assert default_system_prompt(own) == "Be kind."


def test_config_template_key_is_checked_when_the_config_loads():
    from instructkit.config import load_config
    from instructkit.errors import ConfigError
    from instructkit.evaluate.runner import SystemConfig

    with pytest.raises(ConfigError, match="did you mean 'chatml'"):
        load_config(SystemConfig, None, ["name=a", "model=m", "template=chatm"])
