import json
import math
import re

import pytest

from instructkit.errors import ConfigError, LMError
from instructkit.evaluate.judge import (
    JUDGE_SYSTEM,
    JudgeItem,
    compare,
    grade,
    parse_score,
    parse_verdict,
)
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import Completion
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


class _DiesAfter:
    """A judge whose batch number ``k + 1`` fails after answering its first request: like
    OpenAILM, the exception carries that answer in ``completed``. ``error`` is what it raises."""

    def __init__(self, k, error=None, name="judge"):
        self.k, self.error, self.name = k, error, name
        self.batches: list[list[str]] = []

    def complete(self, requests, *, progress=False):
        self.batches.append([_user(r) for r in requests])
        answers = [
            Completion([f"Rating: [[{len(_user(r)) % 10 + 1}]]"], finish_reasons=["stop"])
            for r in requests
        ]
        if self.k is not None and len(self.batches) > self.k:
            error = self.error or LMError("timed out")
            error.completed = {0: answers[0]}
            raise error
        return answers


@pytest.mark.parametrize("error", [None, KeyboardInterrupt()])
def test_a_judge_that_dies_after_k_batches_resumes_with_only_the_rest(tmp_path, error):
    items = [(f"question {i}", f"answer {i}") for i in range(10)]
    journal = tmp_path / "judge.jsonl"
    dying = _DiesAfter(2, error)
    with pytest.raises(type(error) if error else LMError):
        grade(dying, items, journal=journal, batch_size=3)
    # 2 finished batches of 3, and the first answer of the batch that failed
    assert len(journal.read_text().splitlines()) == 7
    again = _DiesAfter(None)
    resumed = grade(again, items, journal=journal, batch_size=3)
    asked = [q for batch in again.batches for q in batch]
    assert len(asked) == 3 and all(
        f"question {i}\n" in q for i, q in zip((7, 8, 9), asked, strict=True)
    )
    assert resumed.scores == grade(_DiesAfter(None), items).scores


def test_journal_may_be_a_job_and_its_judge_journal_takes_the_rows(tmp_path):
    job = Job(tmp_path / "eval.jsonl", fingerprint({"run": 1}), journals={"judge": tmp_path / "j"})
    items = [("q1", "a1"), ("q2", "a2")]
    grade(ScriptedLM(["Rating: [[6]]"]), items, journal=job)
    assert [r["text"] for r in job.records_of("judge")] == ["Rating: [[6]]"] * 2
    assert job.records == []
    reopened = Job(
        tmp_path / "eval.jsonl", fingerprint({"run": 1}), journals={"judge": tmp_path / "j"}
    )
    lm = ScriptedLM(["Rating: [[2]]"])
    assert grade(lm, items, journal=reopened).scores == [6.0, 6.0] and lm.calls == []
    plain = Job(tmp_path / "other.jsonl", fingerprint({"run": 2}))
    grade(ScriptedLM(["Rating: [[6]]"]), items, journal=plain)
    assert len(plain.records) == 2  # no journal named "judge": the main one


def test_unparseable_verdicts_are_named_by_id_and_warned_about(caplog):
    replies = iter(["Rating: [[5]]", "no idea", "Rating: [[8]]"] + ["hmm"] * 12)
    items = [(f"q{i}", "a") for i in range(15)]
    ids = [f"task/{i}" for i in range(15)]
    with caplog.at_level("WARNING", logger="instructkit.evaluate.judge"):
        result = grade(ScriptedLM(lambda r: next(replies)), items, ids=ids, progress=False)
    assert result.unparseable_ids == ["task/1"] + [f"task/{i}" for i in range(3, 15)]
    d = result.to_dict()
    assert d["unparseable_ids"] == result.unparseable_ids
    assert [e["id"] for e in d["items"]] == ids
    [record] = caplog.records
    message = record.getMessage()
    assert "13 of 15 verdicts" in message and "task/1, task/3" in message
    assert "task/11" in message and "task/12" not in message and "3 more" in message
    with pytest.raises(ValueError, match="15 items but 2 ids"):
        grade(ScriptedLM(["x"]), items, ids=["a", "b"])


def test_compare_names_unparseable_items_by_position_by_default(caplog):
    lm = ScriptedLM(lambda r: "[[A]]" if "q0" in _user(r) else "undecided")
    with caplog.at_level("WARNING", logger="instructkit.evaluate.judge"):
        result = compare(lm, [("q0", "x"), ("q1", "y")], [("q0", "z"), ("q1", "w")])
    assert result.unparseable_ids == ["1"]
    assert [item["id"] for item in result.to_dict()["items"]] == ["0", "1"]
    assert "1 of 2 verdicts" in caplog.text


def test_progress_bar_counts_judge_requests(capsys):
    grade(ScriptedLM(["Rating: [[5]]"]), [("q", "a"), ("q2", "b")], progress=True)
    err = capsys.readouterr().err
    assert "judge scripted" in err and "2/2" in err
    grade(ScriptedLM(["Rating: [[5]]"]), [("q", "a")], progress=False)
    assert capsys.readouterr().err == ""


# --- probability scoring (G-Eval) ------------------------------------------------------------


class _Scorer(ScriptedLM):
    """A ScoresChoices fake: log-probabilities from a function of (prompt, prefix, choice)."""

    def __init__(self, logprob, name="scorer"):
        super().__init__(lambda r: "unused", name=name)
        self.logprob, self.asked = logprob, []

    def choice_logprobs(self, requests, prefix, choices):
        self.asked.append((len(requests), prefix, tuple(choices)))
        return [{c: self.logprob(_user(r), prefix, c) for c in choices} for r in requests]


def test_probability_grading_is_the_expected_grade(tmp_path):
    def logprob(prompt, prefix, choice):  # q1: all mass on 3 and 10; q2: uniform
        if "Q1" in prompt:
            return math.log(0.25) if choice == "3" else math.log(0.75) if choice == "10" else -50
        return -1.0

    scorer = _Scorer(logprob)
    result = grade(
        scorer, [("Q1", "a"), ("Q2", "b")], scoring="probabilities", journal=tmp_path / "j"
    )
    assert result.scores[0] == pytest.approx(0.25 * 3 + 0.75 * 10, abs=1e-6)
    assert result.scores[1] == pytest.approx(5.5)
    assert sum(result.grades[1].probabilities.values()) == pytest.approx(1.0)
    assert scorer.asked == [(2, "Rating: [[", tuple(str(i) for i in range(1, 11)))]
    assert result.unparseable == 0 and "p(10)=0.750" in result.grades[0].raw
    again = _Scorer(lambda *a: 0.0)
    assert grade(again, [("Q1", "a")], scoring="probabilities", journal=tmp_path / "j").scores == [
        result.scores[0]
    ]
    assert again.asked == []  # journaled
    assert scorer.calls == []  # nothing was generated


def test_probability_compare_picks_the_likeliest_verdict_in_both_orders():
    def logprob(prompt, prefix, choice):  # prefers whichever answer is "good"
        first = _answer(prompt, "A")
        return {"A": -0.1 if first == "good" else -3.0, "B": -0.5, "C": -2.0}[choice]

    lm = _Scorer(logprob)
    result = compare(
        lm, _items(["good", "bad"] * 2), _items(["bad", "good"] * 2), scoring="probabilities"
    )
    assert result.per_item == [1, -1, 1, -1] and result.agreement == 1.0
    assert lm.asked[0][1:] == ("[[", ("A", "B", "C"))


def test_probability_scoring_needs_a_backend_that_scores_choices():
    with pytest.raises(ConfigError, match='scoring "text"'):
        grade(ScriptedLM(["[[5]]"]), [("q", "a")], scoring="probabilities")
    with pytest.raises(ConfigError, match="unknown judge scoring"):
        grade(ScriptedLM(["[[5]]"]), [("q", "a")], scoring="logits")
