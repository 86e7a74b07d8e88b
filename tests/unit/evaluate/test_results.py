"""The one results schema: what the judge and stats modules write is accepted as is, every
problem of a file is reported at once with its field path, and files round-trip."""

import json

import pytest

from instructkit.errors import DataFormatError
from instructkit.evaluate.judge import compare, grade
from instructkit.evaluate.results import (
    EvalResults,
    format_results,
    load_eval_results,
    paired_results,
    parse_eval_results,
    save_eval_results,
)
from instructkit.evaluate.stats import compare_paired
from instructkit.lm.scripted import ScriptedLM

A, B = [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]


def _results(**extra):
    c = compare_paired(A, B, n_resamples=100)
    row = {"metric": "em", "n": 4, "scores": {"a": 0.5, "b": 0.75}, "comparison": c.to_dict()}
    return {"title": "t", "created": "now", "systems": ["a", "b"], "tasks": {"qa": row}, **extra}


def test_judge_dicts_are_accepted_as_the_judge_module_writes_them():
    def judge_lm(request):  # prefers "zzgood"; cannot decide on q2
        text = request.messages[-1][1]
        if "q2" in text:
            return "nonsense"
        return "[[A]]" if text.index("zzgood") < text.index("zzbad") else "[[B]]"

    items_a, items_b = [("q1", "zzgood"), ("q2", "zzgood")], [("q1", "zzbad"), ("q2", "zzbad")]
    pair = compare(ScriptedLM(judge_lm), items_a, items_b, ids=["qa/1", "qa/2"]).to_dict()
    judge = {"mode": "pairwise", "a": "a", "b": "b", **pair}
    res = parse_eval_results(_results(judge=judge))
    assert res.judge.wins == 1 and res.judge.unparseable == 1 and res.judge.items[0]["id"] == "qa/1"
    assert res.judge.unparseable_ids == ["qa/2"]
    graded = {"mode": "grade", **grade(ScriptedLM(["Rating: [[6]]"]), items_a).to_dict()}
    assert parse_eval_results(_results(judge=graded, systems=["a", "b"])).judge.mean == 6.0


def test_every_problem_is_reported_at_once_with_its_path(tmp_path):
    bad = _results(per_item=[{"id": 1.5, "task": "qa", "scores": {"a": 1.0}}])
    bad["tasks"]["qa"]["comparison"]["n"] = -1
    bad["tasks"]["qa"]["metrics"] = {"em": {"a": "x"}}
    bad["groups"] = {"seen": {"metric": "em", "n": 1, "scores": {}, "extra": 1}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError) as e:
        load_eval_results(path)
    msg = str(e.value)
    assert str(path) in msg and "problems" in msg
    for where in (
        "tasks['qa'].comparison.n:",
        "tasks['qa'].metrics['em']['a']:",
        "groups['seen'].extra: unknown key",
        "per_item[0].id:",
    ):
        assert where in msg, where


def test_a_pairwise_judge_must_name_the_systems_in_order():
    judge = {"mode": "pairwise", "a": "b", "b": "a", "wins": 1, "losses": 0, "ties": 0}
    with pytest.raises(DataFormatError, match=r"judge.a: 'b' is not systems\[0\] 'a'"):
        parse_eval_results(_results(judge=judge))
    with pytest.raises(DataFormatError, match="a pairwise judge needs wins, losses, ties"):
        parse_eval_results(_results(judge={"mode": "pairwise"}))


def test_results_round_trip_and_format(tmp_path):
    res = EvalResults.model_validate(_results(meta={"warnings": ["w1"]}))
    path = save_eval_results(res, tmp_path / "sub" / "r.json")
    assert load_eval_results(path) == res
    text = format_results(res)
    assert "+0.250" in text and "warning: w1" in text


def test_paired_results_holds_the_items_and_the_comparison_and_round_trips(tmp_path):
    c = compare_paired(A, B, n_resamples=100)
    results = paired_results("opt", "program", "label", {"initial": A, "best": B}, c, {"k": 1})
    assert results.systems == ["initial", "best"]
    assert [(it.id, it.scores) for it in results.per_item][1] == (1, {"initial": 1.0, "best": 1.0})
    assert results.tasks["program"].scores == {"initial": 0.5, "best": 0.75}
    assert results.tasks["program"].comparison.diff == pytest.approx(0.25)
    assert results.meta == {"k": 1}
    path = save_eval_results(results, tmp_path / "results.json")
    assert load_eval_results(path) == results  # the load checks pass: means, n, systems
