import pytest

from instructkit.evaluate.checks import normalize_answer, score_answer


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
