import sqlite3
import threading

import pytest

from instructkit.errors import ConfigError, LMError
from instructkit.lm.base import ChatRequest, Completion, ScoresChoices
from instructkit.lm.cache import CachedLM
from instructkit.lm.scripted import ScriptedLM


def ask(text, **params):
    return ChatRequest.from_messages([{"role": "user", "content": text}], **params)


def echo(name="echo"):
    return ScriptedLM(lambda r: "re: " + r.messages[-1][1], name=name)


def test_misses_go_to_the_inner_lm_in_one_batch_and_hits_are_marked(tmp_path):
    inner = echo()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    first = lm.complete([ask("a"), ask("b")])
    assert [c.text for c in first] == ["re: a", "re: b"]
    assert [c.cached for c in first] == [False, False]
    second = lm.complete([ask("a"), ask("c"), ask("b")])
    assert [c.text for c in second] == ["re: a", "re: c", "re: b"]
    assert [c.cached for c in second] == [True, False, True]
    assert [r.messages[-1][1] for r in inner.calls] == ["a", "b", "c"]
    assert (lm.hits, lm.misses) == (2, 3)
    assert second[0].finish_reasons == ["stop"] and second[0].completion_tokens == 2


def test_a_finished_job_rerun_makes_zero_inner_calls_across_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    requests = [ask(str(i), seed=i, temperature=0.8) for i in range(5)] + [ask("g")]
    with CachedLM(echo(), path) as lm:
        before = lm.complete(requests)
    inner = echo()
    with CachedLM(inner, path) as again:
        after = again.complete(requests)
        assert len(again) == 6
    assert inner.calls == []
    assert [c.texts for c in after] == [c.texts for c in before]
    assert all(c.cached for c in after)


def test_the_key_includes_the_lm_name_and_parameters(tmp_path):
    path = tmp_path / "c.sqlite"
    CachedLM(echo("one"), path).complete([ask("a")])
    other = echo("two")
    CachedLM(other, path).complete([ask("a")])
    same = echo("one")
    CachedLM(same, path).complete([ask("a", max_tokens=5)])
    assert len(other.calls) == 1 and len(same.calls) == 1


def test_sampled_requests_without_seed_are_not_cached_by_default(tmp_path):
    inner = echo()
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    sampled = ask("s", temperature=0.7)
    lm.complete([sampled, sampled])
    lm.complete([sampled])
    assert len(inner.calls) == 3 and len(lm) == 0
    opted_in = CachedLM(echo(), tmp_path / "d.sqlite", cache_sampled=True)
    opted_in.complete([sampled])
    assert opted_in.complete([sampled])[0].cached


def test_repeats_in_one_batch_are_sent_once(tmp_path):
    inner = echo()
    out = CachedLM(inner, tmp_path / "c.sqlite").complete([ask("a"), ask("a"), ask("b")])
    assert [c.text for c in out] == ["re: a", "re: a", "re: b"]
    assert len(inner.calls) == 2
    assert out[0] is not out[1] and out[0].texts is not out[1].texts


def test_completions_that_arrived_before_a_failure_are_kept(tmp_path):
    class HalfFails:
        name = "half"

        def complete(self, requests, *, progress=False):
            error = LMError("server gone")
            error.completed = {0: Completion(["kept"], finish_reasons=["stop"])}
            raise error

    path = tmp_path / "c.sqlite"
    with pytest.raises(LMError):
        CachedLM(HalfFails(), path).complete([ask("a"), ask("b")])
    inner = ScriptedLM(lambda r: "new", name="half")
    out = CachedLM(inner, path).complete([ask("a"), ask("b")])
    assert [c.text for c in out] == ["kept", "new"]
    assert len(inner.calls) == 1


def test_is_safe_to_share_between_threads(tmp_path):
    lm = CachedLM(echo(), tmp_path / "c.sqlite")
    errors, results = [], {}

    def work(t):
        try:
            results[t] = [c.text for c in lm.complete([ask(str(i % 7)) for i in range(t, t + 20)])]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results[2] == [f"re: {i % 7}" for i in range(2, 22)]
    assert len(lm) == 7


def test_uses_wal_mode(tmp_path):
    CachedLM(echo(), tmp_path / "c.sqlite").complete([ask("a")])
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not sqlite " * 100)
    with pytest.raises(LMError, match="cannot open the LM cache"):
        CachedLM(echo(), bad)


def test_a_partial_failure_says_what_arrived_in_the_callers_indices(tmp_path):
    class FailsOnB:
        name = "fails"

        def complete(self, requests, *, progress=False):
            answers = {i: Completion([f"re: {r.messages[-1][1]}"]) for i, r in enumerate(requests)}
            error = LMError("server gone")
            error.completed = {i: c for i, c in answers.items() if "b" not in c.text}
            raise error

    path = tmp_path / "c.sqlite"
    CachedLM(echo("fails"), path).complete([ask("hit")])
    with pytest.raises(LMError) as e:
        CachedLM(FailsOnB(), path).complete([ask("a"), ask("hit"), ask("b"), ask("c"), ask("a")])
    got = {i: c.text for i, c in e.value.completed.items()}
    assert got == {0: "re: a", 1: "re: hit", 3: "re: c", 4: "re: a"}


class Scores(ScriptedLM):
    def __init__(self):
        super().__init__(lambda r: "text", name="scores")
        self.scored = []

    def choice_logprobs(self, requests, prefix, choices):
        self.scored += [r.messages[-1][1] for r in requests]
        return [{c: -float(len(r.messages[-1][1] + c)) for c in choices} for r in requests]


def test_choice_logprobs_are_forwarded_and_cached(tmp_path):
    path = tmp_path / "c.sqlite"
    inner = Scores()
    lm = CachedLM(inner, path)
    assert isinstance(lm, ScoresChoices)
    first = lm.choice_logprobs([ask("a"), ask("bb"), ask("a")], "[[", ["1", "10"])
    assert first == [{"1": -2.0, "10": -3.0}, {"1": -3.0, "10": -4.0}, {"1": -2.0, "10": -3.0}]
    assert inner.scored == ["a", "bb"]
    again = Scores()
    assert CachedLM(again, path).choice_logprobs([ask("bb"), ask("c")], "[[", ["1", "10"]) == [
        first[1],
        {"1": -2.0, "10": -3.0},
    ]
    assert again.scored == ["c"]
    other = Scores()
    CachedLM(other, path).choice_logprobs([ask("bb")], "Rating: [[", ["1", "10"])
    assert other.scored == ["bb"]  # the prefix is part of the key
    assert len(lm) == 0  # completions are counted apart


def test_choice_logprobs_over_a_backend_without_them_says_use_text(tmp_path):
    with pytest.raises(ConfigError, match='scoring "text"'):
        CachedLM(echo(), tmp_path / "c.sqlite").choice_logprobs([ask("a")], "[[", ["A"])
