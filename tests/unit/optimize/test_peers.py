"""DSPy's COPRO, MIPROv2 and GEPA as `optimize prompt` methods: run under the budget, find the
instruction the scripted model answers right under, resume from their journaled replies, and
stop on a model failure instead of scoring it as wrong answers."""

import json
import re

import pytest
from test_prompt_workflow import DyingLM, answer, config

from instructkit.errors import ConfigError, LMError
from instructkit.jobs import Job
from instructkit.lm.base import ChatRequest
from instructkit.lm.replay import ReplayLM
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize.peers import min_peer_budget, plan_copro, plan_gepa, plan_mipro
from instructkit.optimize.prompt import run_prompt_optimization

PEERS = ["copro", "mipro", "gepa"]
GOOD = "Choose the sentiment of the text: positive or negative."


def propose(request):
    """A proposer in the format each peer parses: ChatAdapter sections, or JSON (GEPA)."""
    system = "\n".join(c for role, c in request.messages if role == "system")
    fields = re.findall(r"\d+\.\s+`(\w+)`", system.partition("Your output fields are:")[2])
    values = {f: GOOD if "instruction" in f else "Label:" for f in fields}
    if "Outputs will be a JSON object" in system:
        return json.dumps(values)
    if "[[ ## completed ## ]]" in system:
        body = "\n\n".join(f"[[ ## {f} ## ]]\n{v}" for f, v in values.items())
        return body + "\n\n[[ ## completed ## ]]"
    return f"```\n{GOOD}\n```"  # GEPA's default proposer reads a fenced block


def run(tmp_path, method, lm=None, **kw):
    cfg = config(tmp_path, method=method, budget=kw.pop("budget", 200), **kw)
    lm = lm or ScriptedLM(answer)
    proposer = ScriptedLM(propose, name="proposer")
    result = run_prompt_optimization(cfg, lm=lm, proposer_lm=proposer, progress=False)
    return result, lm, proposer


@pytest.mark.parametrize("method", PEERS)
def test_a_peer_finds_the_instruction_within_the_budget(tmp_path, method):
    result, lm, _ = run(tmp_path, method)
    assert result.initial.val < 1.0
    assert result.best.instruction == GOOD
    assert result.best.val == result.best.test == 1.0
    assert result.calls["task"] <= 200
    assert result.calls["proposer"] > 0
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["peer"]["optimizer"] == method
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "peer_calls.jsonl").read_text().split("\n")[:-1]
    ]
    initial_and_pick = 2 * result.sizes["val"]  # scored on val by the workflow itself
    assert sum(r["tag"] == "task" for r in rows) + initial_and_pick == result.calls["task"]
    # every call the model got is accounted for: the search's, and the test runs of both
    assert len(lm.calls) == result.calls["task"] + result.calls["test"]


@pytest.mark.parametrize("method", PEERS)
def test_a_peer_killed_by_a_failing_model_resumes_from_its_journal(tmp_path, method):
    whole, _, _ = run(tmp_path / "whole", method)
    dying = DyingLM(60)  # dies on the first batch it starts after 60 calls
    with pytest.raises(LMError, match="died"):
        run(tmp_path / "killed", method, lm=dying)
    resumed, lm, _ = run(tmp_path / "killed", method)
    assert resumed.best == whole.best
    assert resumed.calls == whole.calls  # the first run's replies were replayed, not re-asked
    assert len(lm.calls) == whole.calls["task"] + whole.calls["test"] - len(dying.calls)


def test_a_budget_that_leaves_a_peer_no_search_fails_before_any_call(tmp_path):
    lm = ScriptedLM(answer)
    with pytest.raises(ConfigError, match="leaves DSPy's gepa no search"):
        run(tmp_path, "gepa", lm=lm, budget=30)
    assert lm.calls == []


def test_plans_fit_the_budget():
    assert plan_copro(10, 1) == (5, 2)  # 10 evaluations: 5 candidates at depth 2
    assert plan_copro(20, 1) == (10, 2)
    assert plan_copro(1, 1) == (2, 1)  # too few: the backstop stops it
    assert plan_mipro(300, 30, 1) == 7  # (300 - 48 bootstrap - 30 default) // 30
    assert plan_gepa(300, 30, 1) == 300 - 41
    for name in PEERS:
        assert min_peer_budget(name, 8) >= 16


def test_replay_answers_the_nth_ask_with_the_nth_reply_and_sends_the_rest(tmp_path):
    draws = iter(range(100))
    inner = ScriptedLM(lambda r: f"draw {next(draws)}")
    job = Job(tmp_path / "h.jsonl", {"a": 1}, journals={"calls": tmp_path / "calls.jsonl"})
    ask = ChatRequest((("user", "pick"),), temperature=1.0)
    first = [c.text for c in ReplayLM(inner, job, "calls").complete([ask, ask])]
    assert first == ["draw 0", "draw 1"]  # asked twice, sent twice: two draws
    job = Job(tmp_path / "h.jsonl", {"a": 1}, journals={"calls": tmp_path / "calls.jsonl"})
    again = ReplayLM(inner, job, "calls")
    texts = [c.text for c in again.complete([ask, ask, ask])]
    assert texts == ["draw 0", "draw 1", "draw 2"]  # two replayed in order, one sent
    assert (again.replayed, again.sent) == (2, 1)
    assert len(job.records_of("calls")) == 3


def test_a_proposer_that_cannot_follow_chatadapter_is_one_clear_error(tmp_path):
    cfg = config(tmp_path, method="copro", budget=200)
    mute = ScriptedLM(lambda r: "I cannot help.", name="mute")
    with pytest.raises(LMError, match="DSPy's copro stopped: AdapterParseError") as info:
        run_prompt_optimization(cfg, lm=ScriptedLM(answer), proposer_lm=mute, progress=False)
    assert "ChatAdapter" in info.value.fix


def test_gepa_ending_with_its_seed_program_says_so(tmp_path):
    cfg = config(tmp_path, method="gepa", budget=200)
    mute = ScriptedLM(lambda r: "I cannot help.", name="mute")
    result = run_prompt_optimization(cfg, lm=ScriptedLM(answer), proposer_lm=mute, progress=False)
    assert result.best.instruction == result.initial.instruction
    assert result.extra["peer"]["note"] == "ended with its starting instructions"
