import json
import re

import pytest

from instructkit.evaluate.judge import (
    JUDGE_SYSTEM,
    JudgeItem,
    compare,
    grade,
    parse_score,
    parse_verdict,
)
from instructkit.lm.scripted import ScriptedLM

# --- parsing messy judge outputs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score"),
    [
        # the judge's 1-10 formats
        ("Solid answer.\nRating: [[7]]", 7.0),
        ("Rating: [[ 8 ]].", 8.0),
        ("I would give it [[7.5]]", 7.5),
        ("Rating: 6", 6.0),
        ("**Rating:** 9", 9.0),
        ("rating=4/10", 4.0),
        ("Overall this deserves 8/10.", 8.0),
        ("Score: 3 / 10", 3.0),
        ('You asked for "Rating: [[6]]" format. Rating: [[3]]', 3.0),  # the last one wins
        ("Rating: [[10]]", 10.0),
        ("Rating: [[1]]", 1.0),
        ("Fine.\n7\n", 7.0),  # a line holding only the number
        ("Seven out of ten? I say 6 out of 10.", 6.0),
    ],
)
def test_parse_score_on_ten(text, score):
    assert parse_score(text) == (score, None)
    assert parse_score(text, (1, 10)).score == score


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Rating: [[11]]", "outside 1-10"),
        ("Rating: [[0]]", "outside 1-10"),
        ("Rating: 0", "outside 1-10"),
        ("That is 17/10 good", "outside 1-10"),
        ("Clarity 7/10, accuracy 5/10.", "several scores"),  # which one? none is guessed
        ("A fine answer overall.", "no score found"),
        ("Rating: [[N]]", "no score found"),
        ("", "no score found"),
    ],
)
def test_parse_score_failures(text, reason):
    score, error = parse_score(text)
    assert score is None and reason in error


@pytest.mark.parametrize(
    "text, score",
    [
        # the data-quality judge's 1-5 formats (moved from tests/unit/data/test_quality.py)
        ("Score: 4\nAccurate and clear.", 4.0),
        ("**Score:** 4.5/5", 4.5),
        ("score = 3. The answer misses a step.", 3.0),
        ("Score: 3\nOn reflection the answer is right.\nScore: 5", 5.0),  # the last one
        ("4\nGood answer.", 4.0),
        ("**5**", 5.0),
        ("I would rate this 4/5 overall.", 4.0),
        ("Four out of five? No: 2 out of 5.", 2.0),
        ("Score: 4.5.", 4.5),
        ("Rating: [[4]]", 4.0),
        ("Score: 7", None),  # out of range
        ("Score: 10", None),  # not read as 1
        ("Score: N/A", None),
        ("Either 3/5 or 4/5.", None),  # ambiguous
        ("Great answer!", None),
        ("", None),
    ],
)
def test_parse_score_on_five(text, score):
    parsed = parse_score(text, (1, 5))
    assert parsed.score == score
    assert (parsed.error is None) == (score is not None)


def test_parse_score_names_the_scale_in_its_error():
    assert parse_score("Score: 7", (1, 5)).error == "score 7 is outside 1-5"
    assert parse_score("Score: 7", (1, 10)) == (7.0, None)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A is more accurate. [[A]]", "A"),
        ("Final verdict: [[b]]", "B"),
        ("They are equal. [[C]]", "C"),
        ("[[Tie]]", "C"),
        ('Use "[[A]]", "[[B]]" or "[[C]]". Mine: [[B]]', "B"),  # an echo, then the verdict
        ("My final verdict: Assistant A", "A"),
        ("Verdict is B.", "B"),
        ("verdict: a tie", "C"),
        ("Both are good answers.", None),
        ("", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


# --- single-answer grading -------------------------------------------------------------------


def _user(request):
    return dict(request.messages)["user"]


def test_grade_scores_unparseable_and_request_shape():
    replies = {"1": "Great.\nRating: [[9]]", "2": "Rating: 4", "3": "Mediocre.", "4": "[[12]]"}

    def judge(request):
        return replies[re.search(r"\[Question\]\nQ(\d)", _user(request)).group(1)]

    lm = ScriptedLM(judge, name="judge")
    items = [JudgeItem("Q1", "a1"), ("Q2", "a2"), ("Q3", "a3"), ("Q4", "a4")]
    result = grade(lm, items, reference=[None, "ref two", None, None])
    assert result.scores == [9.0, 4.0, None, None]
    assert (result.parsed, result.unparseable, result.mean) == (2, 2, 6.5)
    assert result.grades[2].raw == "Mediocre." and "no score" in result.grades[2].error
    assert "outside 1-10" in result.grades[3].error
    request = lm.calls[1]
    assert request.temperature == 0.0
    assert request.messages[0] == ("system", JUDGE_SYSTEM)
    assert "ref two" in _user(request) and "Reference answer" in _user(request)
    assert "Reference answer" not in _user(lm.calls[0])
    d = json.loads(json.dumps(result.to_dict()))
    assert (d["judge"], d["n"], d["unparseable"], d["items"][2]["raw"]) == (
        "judge",
        4,
        2,
        "Mediocre.",
    )


def test_grade_rejects_mismatched_references():
    with pytest.raises(ValueError, match="2 items but 1 references"):
        grade(ScriptedLM(["[[5]]"]), [("q", "a"), ("q2", "b")], reference=["r"])


# --- pairwise comparison with position swap --------------------------------------------------


def _answer(prompt: str, who: str) -> str:
    return re.search(rf"\[Assistant {who}'s answer\]\n(.*?)\n\[End", prompt, re.S).group(1)


def _prefers_good(request):
    """A position-unbiased judge: picks the answer containing "good"."""
    a, b = _answer(_user(request), "A"), _answer(_user(request), "B")
    if ("good" in a) == ("good" in b):
        return "Equal. [[C]]"
    return "[[A]]" if "good" in a else "[[B]]"


QUESTIONS = ["q1", "q2", "q3", "q4"]


def _items(answers):
    return list(zip(QUESTIONS, answers, strict=True))


def test_compare_counts_from_a_side_and_full_agreement():
    a = _items(["good", "bad", "good", "bad"])
    b = _items(["bad", "good", "good too", "bad too"])
    lm = ScriptedLM(_prefers_good)
    result = compare(lm, a, b)
    assert result.per_item == [1, -1, 0, 0]
    assert (result.wins, result.losses, result.ties, result.unparseable) == (1, 1, 2, 0)
    assert (result.agreement, result.inconsistent, result.win_rate) == (1.0, 0, 0.5)
    assert len(lm.calls) == 8 and all(r.temperature == 0.0 for r in lm.calls)
    # each item is asked in both orders: A's answer first, then B's answer first
    assert _answer(_user(lm.calls[0]), "A") == "good"
    assert _answer(_user(lm.calls[1]), "A") == "bad"


def test_judge_preferring_position_a_gives_all_ties():
    lm = ScriptedLM(lambda request: "The first one is better. [[A]]")
    result = compare(lm, _items(["x", "y", "z", "w"]), _items(["1", "2", "3", "4"]))
    assert result.per_item == [0, 0, 0, 0]
    assert (result.wins, result.losses, result.ties) == (0, 0, 4)
    assert (result.agreement, result.inconsistent) == (0.0, 4)
    assert [o.verdict_ab for o in result.outcomes] == ["A"] * 4


def test_compare_counts_unparseable_orders():
    def judge(request):
        prompt = _user(request)
        if "q2" in prompt and _answer(prompt, "A") == "b2":  # swapped order of q2 fails
            return "I cannot decide."
        return _prefers_good(request)

    result = compare(
        ScriptedLM(judge), _items(["good", "a2", "a3", "a4"]), _items(["b1", "b2", "b3", "b4"])
    )
    assert result.per_item == [1, None, 0, 0]
    assert (result.unparseable, result.wins, result.ties) == (1, 1, 2)
    assert result.outcomes[1].raw_ba == "I cannot decide." and result.outcomes[1].agree is None
    assert result.agreement == 1.0  # over the 3 items with both orders parsed
    assert result.win_rate == pytest.approx(2 / 3)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["unparseable"] == 1 and d["items"][1]["verdict_ba"] is None


def test_compare_rejects_mismatched_items():
    lm = ScriptedLM(["[[A]]"])
    with pytest.raises(ValueError, match="3 answers from A but 2 from B"):
        compare(lm, [("q", "a")] * 3, [("q", "b")] * 2)
    with pytest.raises(ValueError, match="different questions"):
        compare(lm, [("q1", "a")], [("q2", "b")])


# --- resuming through the journal ------------------------------------------------------------


def _failing_after(k: int, name: str = "judge") -> ScriptedLM:
    def judge(request):
        if len(lm.calls) > k:
            raise RuntimeError("judge backend went away")
        return f"Rating: [[{len(_user(request)) % 10 + 1}]]"

    lm = ScriptedLM(judge, name=name)
    return lm


def test_grade_resumes_from_journal(tmp_path):
    items = [(f"question {i}", f"answer {i}" * i) for i in range(5)]
    journal = tmp_path / "judge.jsonl"
    crashing = _failing_after(3)
    with pytest.raises(RuntimeError):
        grade(crashing, items, journal=journal, batch_size=2)
    # calls 1-2 were journaled as one batch; call 3 succeeded but its batch died with call 4
    assert len(journal.read_text().splitlines()) == 2
    again = _failing_after(100)
    resumed = grade(again, items, journal=journal, batch_size=2)
    assert len(again.calls) == 3
    fresh = grade(_failing_after(100), items)
    assert resumed.scores == fresh.scores and None not in resumed.scores
    repeat = _failing_after(100)
    assert grade(repeat, items, journal=journal).scores == fresh.scores
    assert repeat.calls == []  # everything was journaled
    other_judge = _failing_after(100, name="another-judge")
    grade(other_judge, items, journal=journal)
    assert len(other_judge.calls) == 5  # keys include the judge model


def test_identical_prompts_are_asked_once(tmp_path):
    lm = ScriptedLM(["Rating: [[5]]"])
    result = grade(lm, [("q", "a")] * 3 + [("q", "b")], journal=tmp_path / "j.jsonl")
    assert result.scores == [5.0] * 4 and len(lm.calls) == 2


def test_compare_resumes_from_journal(tmp_path):
    a, b = _items(["good", "bad", "good", "bad"]), _items(["bad", "good", "bad", "good"])
    journal = tmp_path / "pairs.jsonl"
    calls = []

    def crash_after_five(request):
        calls.append(request)
        if len(calls) > 5:
            raise RuntimeError("boom")
        return _prefers_good(request)

    with pytest.raises(RuntimeError):
        compare(ScriptedLM(crash_after_five), a, b, journal=journal, batch_size=1)
    lm = ScriptedLM(_prefers_good)
    result = compare(lm, a, b, journal=journal, batch_size=1)
    assert len(lm.calls) == 3  # 8 requests, 5 journaled
    assert result.per_item == [1, -1, 1, -1]
