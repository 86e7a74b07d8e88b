"""The heuristic checks of instructkit.data.heuristics and the QualityConfig they read."""

import pytest

from instructkit.config import load_config
from instructkit.data.heuristics import (
    HEURISTICS,
    check_copy,
    check_format,
    check_garbage,
    check_instruction_length,
    check_refusal,
    check_repetition,
    check_response_length,
    check_unsafe,
    exchanges,
)
from instructkit.data.quality_config import QualityConfig
from instructkit.data.quality_filter import filter_records
from instructkit.data.records import Conversation, Message, PreferencePair
from instructkit.data.text_measures import (
    contains_json,
    count_list_items,
    garbage_ratio,
    repetition_ratio,
    strip_code_blocks,
    truncation,
)
from instructkit.errors import ConfigError

CFG = QualityConfig()


def conv(instruction, response, input=None):
    return Conversation([Message("user", instruction, input=input), Message("assistant", response)])


def reasons(check, instruction, response, cfg=CFG, **kw):
    return [name for name, _ in check(conv(instruction, response, **kw), cfg)]


# --- heuristics -----------------------------------------------------------------------------


def test_instruction_length_bounds():
    assert reasons(check_instruction_length, "Name a fruit.", "Apple.") == []
    assert reasons(check_instruction_length, "Fruit?", "Apple.") == ["instruction_length"]
    cfg = QualityConfig(max_instruction_words=5)
    assert reasons(check_instruction_length, "Sort these numbers", "1 2", input="3 1 2") == []
    long = "Please name one fruit that is red."
    assert reasons(check_instruction_length, long, "Apple.", cfg) == ["instruction_length"]
    [(_, detail)] = check_instruction_length(conv("Fruit?", "Apple."), CFG)
    assert detail == "1 instruction words < min_instruction_words=3"


def test_response_length_words_and_chars():
    cfg = QualityConfig(min_response_words=2, max_response_chars=20)
    assert reasons(check_response_length, "Name a fruit.", "An apple.", cfg) == []
    assert reasons(check_response_length, "Name a fruit.", "Apple.", cfg) == ["response_length"]
    too_long = "An apple from the orchard."
    [(_, detail)] = check_response_length(conv("Name a fruit.", too_long), cfg)
    assert detail == "26 response chars > max_response_chars=20"


@pytest.mark.parametrize(
    "response, flagged",
    [
        ("As an AI language model, I do not have opinions.", True),
        ("I\u2019m sorry, but I can\u2019t assist with that.", True),  # curly apostrophes
        ("I cannot    do that.", True),
        ("Paris is the capital of France.", False),
        ("As an aid to memory, use the acronym ROYGBIV.", False),  # word boundary
        ("I can't wait to try this recipe!", False),
    ],
)
def test_refusal_phrases(response, flagged):
    assert reasons(check_refusal, "Tell me something.", response) == (
        ["refusal"] if flagged else []
    )


def test_refusal_phrase_list_is_configurable():
    cfg = QualityConfig(refusal_phrases=["no can do"])
    assert reasons(check_refusal, "Help me.", "No can do, friend.", cfg) == ["refusal"]
    assert reasons(check_refusal, "Help me.", "I'm sorry to hear that.", cfg) == []


def test_copy_rouge_and_verbatim():
    inst = "Write a short poem about the sea at night."
    assert reasons(check_copy, inst, inst) == ["copy"]
    [(_, detail)] = check_copy(conv(inst, inst), CFG)
    assert detail.startswith("ROUGE-L 1.00")
    long_inst = (
        "Read the passage and answer. The committee met on Tuesday to discuss the budget for "
        "the new library building downtown and voted to delay it. Why was it delayed?"
    )
    echo = "The committee met on Tuesday to discuss the budget for the new library"
    [(_, detail)] = check_copy(conv(long_inst, echo), CFG)
    assert "appears verbatim" in detail
    # a short answer quoting the prompt, and an edit that echoes the Alpaca input, are fine
    assert reasons(check_copy, "Which is bigger, the sun or the moon?", "The sun.") == []
    sentence = "The cat sat on the mat and looked out of the window all day long."
    assert reasons(check_copy, "Fix the grammar.", sentence, input=sentence) == []


def test_copy_threshold_is_configurable():
    inst, resp = "name three red fruits", "three red fruits: apple"  # LCS 3 of 4+4 tokens
    assert reasons(check_copy, inst, resp) == []  # F = 0.75 < 0.8
    assert reasons(check_copy, inst, resp, QualityConfig(max_copy_rouge=0.75)) == ["copy"]


@pytest.mark.parametrize(
    "instruction, response, problem",
    [
        ("Write a function.", "```python\ndef f():\n    pass\n", "unbalanced code fences"),
        ("Write a function.", "```python\ndef f():\n    pass\n```\nDone.", None),
        ("Show inline fences.", "Use ```x``` to quote.", None),
        ("Return the data as JSON.", "Name: Bob, age: 3.", "asks for JSON"),
        ("Return the data as JSON.", '```json\n{"name": "Bob"}\n```', None),
        ("Return the data in valid JSON.", "Here: [1, 2] and more.", None),
        ("List 3 fruits.", "1. Apple\n2. Pear", "asks for 3 items"),
        ("List three fruits.", "- Apple\n- Pear\n- Plum\n- Fig", "asks for 3 items"),
        ("List 3 fruits.", "1. Apple\n2. Pear\n3. Plum", None),
        ("List 3 fruits.", "**1.** Apple\n   - red\n   - sweet\n**2.** Pear\n**3.** Plum", None),
        ("List 3 fruits.", "Apple, pear and plum.", None),  # not a markdown list: not counted
        ("Write 3 sentences about cats.", "- Cats purr.\n- Cats nap.", None),  # a unit
        ("Summarize it as bullet points.", "It is a long story about a cat.", "bulleted"),
        ("Summarize it as bullet points.", "- A cat.\n- A long story.", None),
        ("Turn these bullet points into prose.", "A cat and a story.", None),
        ("Tell a story.", "Once upon a time there was...", "ends with '...'"),
        (
            "Explain tides.",
            "Tides are caused by the gravity of the moon and the sun acting on the",
            "mid-sentence",
        ),
        ("Capital of France?", "Paris", None),  # short answers need no full stop
        (
            "Give tips.",
            "Tips:\n- Use a sharp knife to cut the vegetables into small even pieces",
            None,  # list items need no full stop
        ),
    ],
)
def test_format_checks(instruction, response, problem):
    found = check_format(conv(instruction, response), CFG)
    if problem is None:
        assert found == []
    else:
        [(name, detail)] = found
        assert name == "format" and problem in detail


def test_format_helpers():
    assert strip_code_blocks("a\n```\ncode\n```\nb\n```\nopen") == "a\nb"
    assert count_list_items("1. a\n2. b\n- x\n- y\n- z") == 2  # numbered items win
    assert count_list_items("- a\n  - nested\n* b\n```\n- in code\n```") == 3
    assert contains_json('x {"a": [1]} y') and not contains_json("{not json}")
    assert truncation("A sentence that ends properly, with a full stop at the end.") is None
    assert truncation("Short and without stop", min_words=10) is None
    assert truncation("We need these things for the trip to the lake this weekend:") is not None


def test_repetition_ratio_hand_values():
    assert repetition_ratio("a b c a b c", 3) == pytest.approx(0.25)  # abc bca cab abc
    assert repetition_ratio("a b c d", 3) == 0.0
    assert repetition_ratio("a b", 3) == 0.0  # no trigram at all
    assert repetition_ratio("go go go go go", 1) == pytest.approx(0.8)
    loop = "I like it. " * 10
    assert reasons(check_repetition, "Do you like it?", loop) == ["repetition"]
    code = "Here:\n```\n" + "x = x + 1\n" * 20 + "```\nIt adds twenty."
    assert reasons(check_repetition, "Write a loop.", code) == []  # code is not prose


def test_garbage_ratio_and_check():
    assert garbage_ratio("ab\ufffd\ufffd") == pytest.approx(0.5)
    assert garbage_ratio("x = (a + b) * c; | # | {y} @z") == 0.0  # printable ASCII is text
    assert garbage_ratio("Ça coûte 5 €, ¿no?  你好。") == pytest.approx(1 / 17)  # only €
    assert garbage_ratio("") == 0.0
    spam = "Great " + "\U0001f389\u2588\u2593" * 10
    assert reasons(check_garbage, "Celebrate!", spam) == ["garbage"]
    assert reasons(check_garbage, "Celebrate!", "\U0001f389\U0001f389\U0001f389") == []  # short
    prose = "Mix 2 cups (250 g) of flour with 1/2 tsp salt; stir 5-10 min."
    assert reasons(check_garbage, "How do I start?", prose) == []


def test_unsafe_words_default_file_and_boundaries(tmp_path):
    assert reasons(check_unsafe, "Explain how to build a bomb at home.", "Sure.") == ["unsafe"]
    assert reasons(check_unsafe, "What is a fire drill?", "Just kill yourself.") == ["unsafe"]
    assert reasons(check_unsafe, "Describe a bombastic speech.", "It is loud.") == []
    words = tmp_path / "unsafe.txt"
    words.write_text("# my list\n\nbombastic\n  Loud Speech  \n")
    cfg = QualityConfig(unsafe_words_file=str(words))
    records = [
        conv("Describe a bombastic speech.", "It is loud."),
        conv("Say hi to me.", "Hi there."),
    ]
    result = filter_records(records, cfg)
    assert [v.reasons for v in result.verdicts] == [
        [("unsafe", "the instruction contains 'bombastic'")],
        [],
    ]
    with pytest.raises(ConfigError, match="missing.txt"):
        filter_records(records, QualityConfig(unsafe_words_file=str(tmp_path / "missing.txt")))


def test_every_exchange_is_checked_and_named():
    c = Conversation(
        [
            Message("system", "Be brief."),
            Message("user", "What is two plus two?"),
            Message("assistant", "Four."),
            Message("user", "And three plus three?"),
            Message("assistant", "I'm sorry, I cannot do math."),
        ]
    )
    assert check_refusal(c, CFG) == [("refusal", 'turn 2: the response says "i\'m sorry"')]


def test_preference_pairs_are_checked_through_chosen():
    pair = PreferencePair(
        [Message("user", "Name a primary colour.")], chosen="Red.", rejected="As an AI, no."
    )
    bad = PreferencePair(
        [Message("user", "Name a primary colour.")], chosen="As an AI, no.", rejected="Red."
    )
    result = filter_records([pair, bad], CFG)
    assert result.kept == [pair] and [n for n, _ in result.rejected[0][1]] == ["refusal"]


def test_every_heuristic_is_on_by_default_and_empty_records_are_rejected():
    assert QualityConfig().filters == list(HEURISTICS)
    only_user = Conversation([Message("user", "Anyone there at all?")])
    assert exchanges(only_user) == []
    [(record, why)] = filter_records([only_user], CFG).rejected
    assert why == [("no_response", "the record has no user/assistant exchange")]


def test_config_errors_are_collected():
    with pytest.raises(ConfigError) as e:
        load_config(
            QualityConfig,
            overrides=["filters=[refusal,typo]", "min_response_words=9", "max_response_words=3"],
        )
    assert "unknown filter(s) ['typo']" in str(e.value)
    with pytest.raises(ConfigError, match="min_response_words=9 > max_response_words=3"):
        load_config(QualityConfig, overrides=["min_response_words=9", "max_response_words=3"])
    cfg = load_config(QualityConfig, overrides=["filters=[refusal]"])
    assert filter_records([conv("Hi", "x")], cfg).kept != []  # length checks are off
