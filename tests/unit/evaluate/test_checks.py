import pytest

from instructkit.errors import DataFormatError
from instructkit.evaluate.checks import (
    answer_span,
    format_score,
    item_format,
    lenient_score,
    normalize_answer,
    parse_numbers,
    score_answer,
    score_item,
    strict_score,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("  Paris.  ", "paris"),
        ("Answer: Paris", "paris"),
        ("answer:paris", "paris"),
        ("The answer is Paris.", "paris"),
        ("The answer is: 42", "42"),
        ("Positive\nBecause the reviewer loved it.", "positive"),
        ("\n\n  negative\n", "negative"),
        ("The Oak", "oak"),
        ("an apple a day", "apple day"),
        ("Elm  Street!", "elm street"),
        ("3.5", "3.5"),
        ("1,000", "1000"),
        ("-3", "-3"),
        ("well-known", "wellknown"),
        ("Answers vary", "answers vary"),  # "answer" is only stripped with a colon
        ("the", ""),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("response", "answer", "score"),
    [
        ("Paris", "Paris", 1.0),
        ("paris.", "Paris", 1.0),
        ("The answer is Paris.", "Paris", 1.0),
        ("Paris\nParis is the capital and largest city.", "Paris", 1.0),
        ("Rome", "Paris", 0.0),
        ("Paris is the capital", "Paris", 0.0),  # no substring matching
        ("Paris, France", "Paris", 0.0),
        ("The capital is Paris", "Paris", 0.0),
        ("The answer is 12", "12", 1.0),
        ("12", "1", 0.0),
        ("-3", "3", 0.0),
        ("3.5", "35", 0.0),
        # chain of thought: "So the answer is X" with X the rest of its line
        ("5 + 3 = 8. So the answer is 8.", "8", 1.0),
        ("Let's think.\n5 + 3 = 8. So the answer is 8.", "8", 1.0),
        ("5 + 3 = 8. so the answer is: eight", "eight", 1.0),
        ("5 + 3 = 8. So the answer is 9.", "8", 0.0),
        ("So the answer is 8 or 9.", "8", 0.0),
        ("5 + 3 = 8.", "8", 0.0),
        ("So the answer is 8.\nQ: 1 + 1? So the answer is 2.", "2", 0.0),  # first one counts
        ("", "yes", 0.0),
        ("the", "the", 0.0),  # nothing left to compare
    ],
)
def test_score_answer(response, answer, score):
    assert score_answer(response, answer) == score


# --- strict / lenient / format on task items ---------------------------------------------------

SENT = ["positive", "negative"]
NEG = {"id": "s1", "answer": "negative", "format": "label", "options": SENT}
POS = {"id": "s2", "answer": "positive", "format": "label", "options": SENT}
YES = {"id": "y1", "answer": "yes", "format": "label", "options": ["yes", "no"]}
MC = {"id": "m1", "answer": "oven", "format": "label", "options": ["fridge", "oven", "sink"]}
TWELVE = {"id": "n1", "answer": "12", "format": "number"}
PARIS = {"id": "w1", "answer": "Paris", "format": "word"}
JSON = {"id": "j1", "answer": '{"name": "Ana", "age": 31, "city": "Lima"}', "format": "json"}
LIST = {"id": "l1", "answer": "eggs, bread, milk", "format": "list"}


@pytest.mark.parametrize(
    ("item", "response", "strict", "lenient", "fmt"),
    [
        # labels: the answer as the response's answer, right label only, no hedging
        (NEG, "negative", 1, 1, 1),
        (NEG, "Negative.", 1, 1, 1),
        (NEG, "The review is negative.", 0, 1, 0),
        (NEG, "The answer is negative", 1, 1, 1),
        (NEG, "Not positive, negative", 0, 1, 0),
        (POS, "Not positive, negative", 0, 0, 0),  # a negated label is not named
        (POS, "The review is not positive.", 0, 0, 0),
        (NEG, "positive or negative?", 0, 0, 0),  # both named: ambiguous
        (POS, "positive or negative?", 0, 0, 0),
        (NEG, "positive", 0, 0, 1),  # the right shape, the wrong label
        (NEG, "It is negative. Many would call it positive.", 0, 1, 0),  # first sentence only
        (NEG, "I think so.\nThe review is negative.", 0, 0, 0),  # first line only
        (NEG, "Let's see.\nThe food was cold. So the answer is negative.", 1, 1, 1),
        (NEG, "So the answer is negative.\nReview: great! So the answer is positive.", 1, 1, 1),
        (NEG, "Answer: It's negative", 0, 1, 0),
        # choice letters map to options by position
        (MC, "(B)", 0, 1, 1),
        (MC, "B", 0, 1, 1),
        (MC, "B) oven", 0, 1, 0),
        (MC, "The answer is (B).", 0, 1, 1),
        (MC, "I pick option B", 0, 1, 0),
        (MC, "(A)", 0, 0, 1),
        (MC, "(D)", 0, 0, 0),  # no fourth option
        (MC, "(B) fridge", 0, 0, 0),  # letter and word disagree
        (MC, "(A) fridge (B) oven (C) sink", 0, 0, 0),  # an echo of the choices
        # yes/no synonyms
        (YES, "Yes, it is.", 0, 1, 0),
        (YES, "True", 0, 1, 0),
        (YES, "No.", 0, 0, 1),
        (YES, "Yes or no.", 0, 0, 0),
        (YES, "That is not true.", 0, 0, 0),
        # numbers
        (TWELVE, "12", 1, 1, 1),
        (TWELVE, "The answer is 12.", 1, 1, 1),
        (TWELVE, "12.0", 0, 1, 1),
        (TWELVE, "twelve", 0, 1, 1),
        (TWELVE, "Twelve apples.", 0, 1, 0),
        (TWELVE, "There are 12 apples left.", 0, 1, 0),
        (TWELVE, "3 + 9 = 12", 0, 1, 0),  # after the last "="
        (TWELVE, "Raj has 3, buys 9 and has 12.", 0, 0, 0),  # several numbers, no "="
        (TWELVE, "12 or 13", 0, 0, 0),
        (TWELVE, "1,200", 0, 0, 1),
        (TWELVE, "3 + 9 = 12. So the answer is 12.", 1, 1, 1),
        (TWELVE, "First, 3 + 4 = 7.\nThen 7 + 5 = 12.\nSo the answer is 12.", 1, 1, 1),
        (TWELVE, "Let me count.\nSo the answer is 7.", 0, 0, 1),
        (TWELVE, "", 0, 0, 0),
        ({"answer": "21", "format": "number"}, "twenty-one", 0, 1, 1),
        ({"answer": "21", "format": "number"}, "twenty one", 0, 1, 1),
        ({"answer": "1200", "format": "number"}, "1,200", 1, 1, 1),
        ({"answer": "-3", "format": "number"}, "It is -3.", 0, 1, 0),
        # short words: the answer among the words of the answer span
        (PARIS, "Paris", 1, 1, 1),
        (PARIS, "The capital of France is Paris.", 0, 1, 0),
        (PARIS, "Paris, France", 0, 1, 1),
        (PARIS, "Not Paris.", 0, 0, 1),
        (PARIS, "Parisian", 0, 0, 1),  # whole words only
        (PARIS, "Lyon. Paris is larger.", 0, 0, 0),
        # JSON
        (JSON, '{"name": "Ana", "age": 31, "city": "Lima"}', 1, 1, 1),
        (JSON, '{"city": "lima", "name": "Ana", "age": 31}', 0, 1, 1),
        (JSON, '```json\n{"name": "Ana",\n "age": "31", "city": "Lima"}\n```', 0, 1, 1),
        (JSON, 'Here it is: {"name": "Ana", "age": 31, "city": "Lima"}', 0, 1, 0),
        (JSON, '{"name": "Ana", "age": 30, "city": "Lima"}', 0, 0, 1),
        (JSON, '{"name": "Ana", "age": 31}', 0, 0, 0),  # a key missing
        (JSON, "name: Ana, age: 31, city: Lima", 0, 0, 0),
        (JSON, '{"name": "Ana", "age": 31, "city": "Lima"', 0, 0, 0),  # not closed
        # lists
        (LIST, "eggs, bread, milk", 1, 1, 1),
        (LIST, "eggs, bread and milk", 0, 1, 1),
        (LIST, "- eggs\n- bread\n- milk", 0, 1, 1),
        (LIST, "1. eggs\n2. bread\n3. milk", 0, 1, 1),
        (LIST, "Items: eggs, bread, milk", 0, 1, 0),
        (LIST, "He bought eggs, bread, milk", 0, 0, 0),
        (LIST, "milk, bread, eggs", 0, 0, 1),  # order matters
        (LIST, "eggs, bread", 0, 0, 0),
    ],
)
def test_score_item(item, response, strict, lenient, fmt):
    assert score_item(item, response) == {
        "strict": float(strict),
        "lenient": float(lenient),
        "format": float(fmt),
    }
    assert strict_score(item, response) == strict
    assert lenient_score(item, response) == lenient
    assert format_score(item, response) == fmt


def test_lenient_is_never_below_strict():
    responses = ["negative", "(A) negative", "negative\nAnswer: positive", "the negative"]
    for response in responses:
        assert lenient_score(NEG, response) >= strict_score(NEG, response)


@pytest.mark.parametrize(
    ("response", "span"),
    [
        ("Paris", "Paris"),
        ("\n\nParis\nLyon", "Paris"),
        ("The answer is: Paris. It is big.", "Paris."),
        ("Reasoning here.\nSo the answer is 7.\nQ: next", "7."),
        ("Answer: (B)", "(B)"),
        ("It is cold. Very cold.", "It is cold."),
        ("3.5 is it", "3.5 is it"),  # a decimal point ends no sentence
    ],
)
def test_answer_span(response, span):
    assert answer_span(response) == span


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("12", [12.0]),
        ("12.0 and 1,200", [12.0, 1200.0]),
        ("minus: -3", [-3.0]),
        ("twenty-one or twenty one", [21.0, 21.0]),
        ("zero, nineteen, ninety", [0.0, 19.0, 90.0]),
        ("7th place", []),
        ("no numbers", []),
    ],
)
def test_parse_numbers(text, numbers):
    assert parse_numbers(text) == numbers


def test_item_format_is_implied_or_checked():
    assert item_format({"answer": "x", "options": ["x", "y"]}) == "label"
    assert item_format({"answer": "1990"}) == "number"
    assert item_format({"answer": "Elm Street"}) == "word"
    with pytest.raises(DataFormatError, match="format 'yaml'"):
        item_format({"id": "q", "answer": "x", "format": "yaml"})
    with pytest.raises(DataFormatError, match="no options"):
        item_format({"id": "q", "answer": "x", "format": "label"})
    with pytest.raises(DataFormatError, match="no answer"):
        score_item({"id": "q", "answer": ""}, "x")
