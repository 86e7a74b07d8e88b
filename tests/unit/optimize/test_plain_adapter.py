"""PlainAdapter: the prompts it writes (hand-written expectations) and the replies it reads."""

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import PlainAdapter, bridge_lm

SENTIMENT = dspy.Signature("text -> sentiment", "Classify the sentiment of the text.")
MULTI = dspy.Signature("question, context -> answer, confidence: int", "Answer from the context.")


def test_one_output_prompt_is_instruction_then_field_lines():
    messages = PlainAdapter().format(SENTIMENT, [], {"text": "I loved it."})
    assert messages == [
        {"role": "user", "content": "Classify the sentiment of the text.\n\nText: I loved it."}
    ]


def test_several_outputs_prompt_ends_with_the_answer_form():
    messages = PlainAdapter().format(MULTI, [], {"question": "Who?", "context": "Ann did."})
    assert messages[-1]["content"] == (
        "Answer from the context.\n\n"
        "Question: Who?\nContext: Ann did.\n\n"
        "Answer in this form:\nAnswer: ...\nConfidence: ..."
    )


def test_demos_become_earlier_turns_in_the_same_format():
    demos = [{"text": "Awful.", "sentiment": "negative"}, {"text": "incomplete"}]
    messages = PlainAdapter().format(SENTIMENT, demos, {"text": "Great."})
    assert messages == [
        {"role": "user", "content": "Classify the sentiment of the text.\n\nText: Awful."},
        {"role": "assistant", "content": "negative"},
        {"role": "user", "content": "Classify the sentiment of the text.\n\nText: Great."},
    ]


def test_with_instructions_changes_the_prompt():
    signature = SENTIMENT.with_instructions("Say positive or negative.")
    content = PlainAdapter().format(signature, [], {"text": "Fine."})[0]["content"]
    assert content == "Say positive or negative.\n\nText: Fine."


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("positive", "positive"),
        ("\n\n  positive  \nIt is upbeat.", "positive"),
        ("Sentiment: negative\nBecause.", "negative"),
        ("sentiment:neutral", "neutral"),
        ("Note: it is good", "Note: it is good"),  # an unknown label is part of the answer
    ],
)
def test_one_output_is_the_first_non_empty_line(reply, expected):
    assert PlainAdapter().parse(SENTIMENT, reply) == {"sentiment": expected}


def test_several_outputs_are_read_from_labelled_lines_then_in_order():
    adapter = PlainAdapter()
    assert adapter.parse(MULTI, "Confidence: 3\nAnswer: Ann") == {"answer": "Ann", "confidence": 3}
    assert adapter.parse(MULTI, "Ann\nConfidence: 4") == {"answer": "Ann", "confidence": 4}
    assert adapter.parse(MULTI, "Ann\n5") == {"answer": "Ann", "confidence": 5}


@pytest.mark.parametrize("reply", ["   \n  ", "Answer: Ann", "Answer: Ann\nConfidence: high"])
def test_unreadable_replies_raise_adapter_parse_errors(reply):
    with pytest.raises(AdapterParseError, match="PlainAdapter could not read the reply"):
        PlainAdapter().parse(MULTI, reply)


def test_predict_with_several_outputs_end_to_end():
    lm = ScriptedLM(["Answer: Ann\nConfidence: 2"])
    with dspy.context(lm=bridge_lm(lm), adapter=PlainAdapter()):
        result = dspy.Predict(MULTI)(question="Who?", context="Ann did.")
    assert (result.answer, result.confidence) == ("Ann", 2)
