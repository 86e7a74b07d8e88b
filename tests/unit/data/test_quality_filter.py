"""filter_records: heuristics, then a scorer callable; the quality report it builds."""

import json

import pytest

from instructkit.data.quality_config import QualityConfig
from instructkit.data.quality_filter import apply_scores, filter_records
from instructkit.data.records import Conversation, Message
from instructkit.errors import InstructkitError

CFG = QualityConfig()


def conv(instruction, response):
    return Conversation([Message("user", instruction), Message("assistant", response)])


def test_filter_records_report_counts_distributions_examples():
    records = [conv("Say one word please.", "word " * n) for n in (1, 2, 3, 4, 10)]
    records += [conv("Tell me a fact.", "As an AI, I cannot.")] * 4
    result = filter_records(records, QualityConfig(filters=["refusal"]), rows=range(11, 20))
    report = result.report
    assert (report.n_records, report.n_kept, report.n_rejected) == (9, 5, 4)
    assert report.counts == {"refusal": 4}
    assert [e["row"] for e in report.examples["refusal"]] == [16, 17, 18]  # three examples
    words = report.distributions["response_words"]  # 1 2 3 4 5 5 5 5 10: p90 at 7.2 -> 5 + 0.2*5
    assert words == {"min": 1, "p50": 5, "p90": 6.0, "max": 10}
    d = report.to_dict()
    assert json.loads(json.dumps(d))["counts"] == {"refusal": 4} and d["judge"] is None
    text = report.format()
    assert "9 records: 5 kept, 4 rejected" in text and "refusal" in text and "p90" in text
    assert len(result.kept) + len(result.rejected) == len(records)


def test_distribution_quantiles_interpolate():
    records = [conv("Say one word please.", "word " * n) for n in (1, 2, 3, 4, 10)]
    dist = filter_records(records, CFG).report.distributions["response_words"]
    assert dist == {"min": 1, "p50": 3, "p90": pytest.approx(7.6), "max": 10}


def scorer_of(ratings, seen=None):
    """A scorer rating each conversation by its instruction: ratings[instruction] is a score
    (text "Score: N") or a raw text (unparsed); ``seen`` collects what it was asked."""

    def score(convs):
        out = []
        for c in convs:
            rating = ratings[c.messages[0].content]
            if seen is not None:
                seen.append(c.messages[0].content)
            out.append((None, rating) if isinstance(rating, str) else (rating, f"Score: {rating}"))
        return out

    return score


def test_scores_below_threshold_drop_and_unparsed_ones_are_flagged():
    ratings = {"Task a.": 5.0, "Task b.": 4.0, "Task c.": 3.5, "Task d.": "Lovely!"}
    records = [conv(f"Task {x}.", f"Answer {x} here.") for x in "abcd"]
    cfg = QualityConfig(min_instruction_words=1)
    result = filter_records(records, cfg, scorer=scorer_of(ratings))
    assert [v.kept for v in result.verdicts] == [True, True, False, True]
    assert result.verdicts[2].reasons == [("judge", "judge score 3.5 < judge_threshold=4")]
    assert result.verdicts[3].flags == [
        ("judge_unparsed", "no 1-5 score in the judgment 'Lovely!'")
    ]
    assert result.verdicts[0].scores["judge"] == 5.0 and "judge" not in result.verdicts[3].scores
    report = result.report
    assert report.counts == {"judge": 1} and report.flags == {"judge_unparsed": 1}
    assert report.judge == {"model": None, "scored": 4, "threshold": 4.0, "unparsed": 1}
    assert report.distributions["judge"] == {"min": 3.5, "p50": 4.0, "p90": 4.8, "max": 5.0}
    text = report.format()
    assert "judge_unparsed (kept)" in text
    assert "judge: 4 records scored, threshold 4, 1 unparsed" in text

    strict = cfg.model_copy(
        update={"judge_threshold": 4.5, "drop_unparsed": True, "judge": "openai:rater"}
    )
    result = filter_records(records, strict, scorer=scorer_of(ratings))
    assert [v.kept for v in result.verdicts] == [True, False, False, False]
    assert result.report.counts == {"judge": 2, "judge_unparsed": 1}
    assert "judge openai:rater: 4 records scored, threshold 4.5" in result.report.format()


def test_the_scorer_sees_only_heuristic_survivors():
    seen = []
    records = [conv("Task a.", "Fine answer."), conv("Task b.", "As an AI, I cannot.")]
    records.append(conv("Task c.", "Another fine answer."))
    cfg = QualityConfig(min_instruction_words=1)
    result = filter_records(records, cfg, scorer=scorer_of({"Task a.": 5, "Task c.": 2}, seen))
    assert seen == ["Task a.", "Task c."]
    assert [v.kept for v in result.verdicts] == [True, False, False]
    assert result.rejected[1][1] == [("judge", "judge score 2 < judge_threshold=4")]


def test_a_scorer_that_skips_records_is_an_error():
    records = [conv("Task a.", "Fine answer."), conv("Task c.", "Another fine answer.")]
    with pytest.raises(InstructkitError, match="1 ratings for 2 records"):
        filter_records(
            records,
            QualityConfig(min_instruction_words=1),
            scorer=lambda convs: [(5.0, "Score: 5")],
        )


def test_apply_scores_counts_unparsed():
    from instructkit.data.heuristics import Verdict

    verdicts = [Verdict(), Verdict(), Verdict()]
    scored = [(4.0, "Score: 4"), (None, "meh"), (1.0, "Score: 1")]
    assert apply_scores(verdicts, scored, CFG) == 1
    assert [v.kept for v in verdicts] == [True, True, False]
