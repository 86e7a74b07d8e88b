"""The AlpaGasus-style LLM rating of instruction data as a scorer: requests, parsing,
journaling and resume through instructkit.jobs.Job."""

import json

import pytest

from instructkit.data.quality_config import QualityConfig
from instructkit.data.quality_filter import filter_records
from instructkit.data.records import Conversation, Message
from instructkit.errors import ConfigError, LMError
from instructkit.evaluate.quality_judge import (
    QualityScorer,
    build_quality_scorer,
    rating_of,
    rating_request,
)
from instructkit.lm.scripted import ScriptedLM


def conv(instruction, response):
    return Conversation([Message("user", instruction), Message("assistant", response)])


def test_rating_of_reads_the_1_to_5_scale():
    # the formats themselves are tested with parse_score in test_judge.py
    assert rating_of("Score: 4\nAccurate and clear.") == 4.0
    assert rating_of("Score: 7") is None  # outside the prompt's 1-5 scale
    assert rating_of("Great answer!") is None


def test_rating_request_holds_the_record():
    c = Conversation(
        [
            Message("system", "Be brief."),
            Message("user", "Hi."),
            Message("assistant", "Hello."),
            Message("user", "Add the numbers.", input="2 and 3"),
            Message("assistant", "5"),
        ]
    )
    request = rating_request(c, max_tokens=64)
    prompt = request.messages[1][1]
    assert (
        request.temperature == 0.0
        and request.max_tokens == 64
        and request.messages[0][0] == "system"
    )
    assert "System: Be brief.\nUser: Hi.\nAssistant: Hello." in prompt
    assert "### Instruction\nAdd the numbers." in prompt and "### Input\n2 and 3" in prompt
    assert prompt.index("### Response\n5") > prompt.index("### Input")


def scored_lm(scores, die_after=None):
    """Judge answering with scores[instruction] (a float, or a raw string); with ``die_after``,
    a connection that fails on every call after that many answers."""
    answered = []

    def answer(request):
        if die_after is not None and len(answered) >= die_after:
            raise LMError("connection lost")
        prompt = request.messages[1][1]
        score = scores[prompt.split("### Instruction\n")[1].split("\n")[0]]
        answered.append(request)
        return score if isinstance(score, str) else f"Score: {score}\nBecause."

    return ScriptedLM(answer, name="judge")


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scorer_returns_score_and_raw_text_and_rates_identical_records_once():
    lm = scored_lm({"Task a.": 5, "Task b.": "Lovely!"})
    scorer = QualityScorer(lm, progress=False, max_tokens=32)
    convs = [conv("Task a.", "Fine.")] * 3 + [conv("Task b.", "Also fine.")]
    assert scorer(convs) == [(5.0, "Score: 5\nBecause.")] * 3 + [(None, "Lovely!")]
    assert len(lm.calls) == 2 and lm.calls[0].max_tokens == 32 and lm.calls[0].temperature == 0
    assert (scorer.requests, scorer.resumed) == (2, 0)
    assert scorer.summary() == "judge judge: 2 requests sent, 0 ratings resumed"


def test_rating_resumes_from_the_journal(tmp_path):
    scores = {f"Task {i}.": 5 if i % 2 else 3 for i in range(7)}
    convs = [conv(f"Task {i}.", f"Answer {i} here.") for i in range(7)]
    journal = tmp_path / "j.jsonl"
    dying = QualityScorer(
        scored_lm(scores, die_after=4), journal=journal, batch_size=2, progress=False
    )
    with pytest.raises(LMError):
        dying(convs)
    rows = read_jsonl(journal)
    assert len(rows) == 4  # two whole batches; the batch in flight is lost
    assert set(rows[0]) == {"key", "score", "judgment"} and rows[0]["score"] == 3.0
    assert json.loads((tmp_path / "j.jsonl.state.json").read_text())["state"] == {"judged": 4}

    again = scored_lm(scores)
    scorer = QualityScorer(again, journal=journal, batch_size=2, progress=False)
    resumed = scorer(convs)
    assert len(again.calls) == 3  # only the records not yet rated
    assert (scorer.requests, scorer.resumed) == (3, 4)
    assert resumed == QualityScorer(scored_lm(scores), progress=False)(convs)
    assert len(read_jsonl(journal)) == 7  # each record rated once

    done = scored_lm(scores)
    QualityScorer(done, journal=journal, progress=False)(convs)
    assert done.calls == []  # a finished job asks nothing
    other_judge = ScriptedLM(["Score: 5"], name="another-model")
    QualityScorer(other_judge, journal=journal, progress=False)(convs)
    assert len(other_judge.calls) == 7  # the journal is keyed by model too
    fresh = scored_lm(scores)
    QualityScorer(fresh, journal=journal, progress=False, fresh=True)(convs)
    assert len(fresh.calls) == 7 and len(read_jsonl(journal)) == 7


def test_a_journal_from_another_prompt_is_refused(tmp_path):
    journal = tmp_path / "j.jsonl"
    state = {"fingerprint": {"config": {"prompt": "old"}, "inputs": {}}, "state": {}}
    (tmp_path / "j.jsonl.state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="--fresh"):
        QualityScorer(ScriptedLM(["Score: 5"]), journal=journal, progress=False)(
            [conv("Task a.", "Fine.")]
        )


def test_filter_records_with_the_llm_scorer():
    scores = {"Task a.": 5, "Task b.": 4, "Task c.": 3.5, "Task d.": "Lovely!"}
    records = [conv(f"Task {x}.", f"Answer {x} here.") for x in "abcd"]
    cfg = QualityConfig(min_instruction_words=1)
    result = filter_records(records, cfg, scorer=QualityScorer(scored_lm(scores), progress=False))
    assert [v.kept for v in result.verdicts] == [True, True, False, True]
    assert result.report.judge == {"model": None, "scored": 4, "threshold": 4.0, "unparsed": 1}


def test_progress_bar_counts_records(capsys):
    scorer = QualityScorer(scored_lm({"Task a.": 5, "Task b.": 4}), progress=True)
    scorer([conv("Task a.", "Fine."), conv("Task b.", "Fine.")])
    err = capsys.readouterr().err
    assert "judge judge" in err and "2/2" in err


def test_build_quality_scorer_journals_beside_the_output(tmp_path):
    assert build_quality_scorer(QualityConfig(), tmp_path / "clean.json") is None
    cfg = QualityConfig(judge="openai:rater", judge_batch_size=3, judge_max_tokens=64)
    scorer = build_quality_scorer(cfg, tmp_path / "clean.json", progress=False)
    assert scorer.lm.name == "openai:rater" and scorer.journal == tmp_path / "clean.judge.jsonl"
    assert (scorer.batch_size, scorer.max_tokens) == (3, 64)
    cfg = cfg.model_copy(update={"judge_journal": str(tmp_path / "mine.jsonl")})
    assert build_quality_scorer(cfg, tmp_path / "clean.json").journal == tmp_path / "mine.jsonl"
    with pytest.raises(ConfigError, match="batch_size"):
        QualityScorer(ScriptedLM(["x"]), batch_size=0)
