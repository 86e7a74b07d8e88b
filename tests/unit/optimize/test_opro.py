"""OPRO on a scripted task model whose accuracy depends on words in the instruction and a
scripted proposer that reads the trajectory: it improves, shows the trajectory sorted
ascending, never exceeds its budget, is seeded, resumes without calls, refuses bad input (and a
missing proposer) before any call."""

import json
import re

import dspy
import pytest

from instructkit.errors import ConfigError
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import OPRO, BudgetExceeded, CallCounter, OPROSettings, bridge_lm
from instructkit.optimize.opro import meta_prompt

KEYS = ["carefully", "exactly", "only", "evidence"]  # negatives are even items: 0 and 2 count
START = "Classify the sentiment of the text as positive or negative."


def answer(request):
    """Positives are always right; negative item i is right iff the instruction has KEYS[i % 4]."""
    instruction, _, rest = request.messages[-1][1].partition("\n\n")
    text = rest.split("Text: ", 1)[1]
    if "good" in text:
        return "positive"
    return "negative" if KEYS[int(text.split()[1]) % 4] in instruction.lower() else "positive"


def rows(n=24):
    return [
        dspy.Example(text=f"item {i} {'good' if i % 2 else 'bad'}",
                     label="positive" if i % 2 else "negative").with_inputs("text")
        for i in range(n)
    ]  # fmt: skip


def metric(example, prediction):
    return float(prediction.label.strip().lower() == example.label)


def student(instruction=START):
    program = dspy.Predict("text -> label")
    program.signature = program.signature.with_instructions(instruction)
    return program


def trajectory(prompt):
    """The (instruction, score) pairs a meta-prompt shows, in order."""
    return [(t, int(s)) for t, s in re.findall(r"text:\n(.*?)\nscore:\n(\d+)", prompt)]


class Climber:
    """A proposer that builds on the LAST instruction shown (the best, if the trajectory is
    sorted ascending) by adding a key it lacks; it records every trajectory it saw."""

    def __init__(self):
        self.seen = []

    def __call__(self, request):
        shown = trajectory(request.messages[-1][1])
        self.seen.append(shown)
        last = shown[-1][0]
        missing = [k for k in KEYS if k not in last.lower()] or ["again"]
        return f"{last.rstrip('.')} {missing[request.seed % len(missing)]}."


def optimizer(budget=300, script=answer, proposer=None, history=None, **kw):
    counter = CallCounter()
    lm = bridge_lm(ScriptedLM(script), counter=counter)
    proposer_lm = bridge_lm(ScriptedLM(proposer or Climber()), counter=counter, role="proposer")
    # novelty 0.98: the climber's one-word edits would be near duplicates at the default 0.9
    settings = {"seed": 0, "per_step": 2, "novelty": 0.98, "history": history, "progress": False}
    settings.update(kw)
    return OPRO(lm, proposer_lm, counter, budget, **settings), counter


def outline(result):
    return [(r["step"], r["instruction"], r["score"]) for r in result.history]


def test_opro_climbs_the_sorted_trajectory_to_the_best_instruction():
    climber = Climber()
    opt, counter = optimizer(budget=400, proposer=climber)
    best = opt.compile(student(), trainset=rows(), metric=metric)
    result = opt.result
    assert result.baseline_score == 0.5 and result.best_score == 1.0
    assert "carefully" in result.best_instruction and "only" in result.best_instruction
    assert best.predictors()[0].signature.instructions == result.best_instruction
    # every prompt showed the trajectory ascending, and its best last
    assert all([s for _, s in shown] == sorted(s for _, s in shown) for shown in climber.seen)
    assert len(climber.seen[-1]) > 2
    assert result.calls == {"task": counter.count("task"), "proposer": counter.count("proposer")}
    assert result.calls["task"] == result.history[-1]["calls_total"] <= 400
    assert result.history[0] == {
        "step": 0, "instruction": START, "score": 0.5, "n": 24, "calls": 24, "calls_total": 24,
    }  # fmt: skip


def test_a_proposer_that_ignores_the_order_does_not_climb():
    def first(request):  # builds on the FIRST instruction shown: the worst one
        shown = trajectory(request.messages[-1][1])
        return f"{shown[0][0].rstrip('.')} {KEYS[request.seed % 4]}."

    opt, _ = optimizer(budget=400, proposer=first)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert opt.result.best_score < 1.0  # the trajectory's order matters to the result


def test_the_trajectory_keeps_the_top_pairs_ascending():
    prompt = meta_prompt(
        [("A.", 0.25), ("B.", 0.5), ("C.", 1.0)],
        [{"text": "item 1", "label": "negative"}],
        output="label",
        required=["label", "positive"],
    )
    assert trajectory(prompt) == [("A.", 25), ("B.", 50), ("C.", 100)]
    assert "input:\ntext: item 1\noutput:\nlabel: negative" in prompt
    assert '"label", "positive"' in prompt
    climber = Climber()
    opt, _ = optimizer(budget=400, proposer=climber, keep=2)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert max(len(shown) for shown in climber.seen) == 2


@pytest.mark.parametrize("budget", [24, 50, 97, 150])
def test_the_budget_is_never_exceeded(budget):
    opt, counter = optimizer(budget=budget)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.count("task") <= budget
    assert opt.result.calls["task"] == counter.count("task")
    if budget < 400:
        assert opt.result.stopped == "budget"


def test_the_same_seed_gives_the_same_search_and_another_seed_another():
    runs = []
    for seed in (0, 0, 1):
        opt, _ = optimizer(budget=200, seed=seed)
        opt.compile(student(), trainset=rows(), metric=metric)
        runs.append(outline(opt.result))
    assert runs[0] == runs[1] != runs[2]


def test_invalid_and_duplicate_proposals_are_refused_and_patience_stops_the_search():
    other = "Decide whether the text is positive or negative."
    replies = iter(["<INS>Classify the text.</INS>", START, START.upper(), other])

    def proposer(request):
        return next(replies, other.replace(".", " today."))

    opt, counter = optimizer(budget=400, proposer=proposer, patience=3, novelty=0.9)
    opt.compile(student(), trainset=rows(), metric=metric)
    reasons = [r for _, r in opt.result.rejected]
    assert "does not name ['negative', 'positive']" in reasons[0]  # the <INS> tag is unwrapped
    assert reasons[1:3] == ["already proposed", "already proposed"]
    assert any("near duplicate" in r for r in reasons)
    assert [r["instruction"] for r in opt.result.history] == [START, other]
    assert opt.result.stopped == "early_stop"


class Dies:
    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self, request):
        self.calls += 1
        if self.calls > self.k:
            raise RuntimeError("killed")
        return answer(request)


def test_a_crashed_run_resumes_without_calling_any_model_for_journaled_work(tmp_path):
    whole, whole_counter = optimizer(budget=300, history=tmp_path / "whole.jsonl")
    whole.compile(student(), trainset=rows(), metric=metric)
    path = tmp_path / "opro.jsonl"
    crashed, _ = optimizer(budget=300, script=Dies(100), history=path)
    with pytest.raises(Exception, match="killed"):
        crashed.compile(student(), trainset=rows(), metric=metric)
    journaled = [json.loads(x) for x in path.read_text().splitlines()]
    proposals = path.with_name("opro.jsonl.proposals.jsonl").read_text().splitlines()
    resumed, counter = optimizer(budget=300, history=path)
    resumed.compile(student(), trainset=rows(), metric=metric)
    assert outline(resumed.result) == outline(whole.result)
    assert counter.count("task") == whole_counter.count("task") - len(journaled)
    asked = whole_counter.count("proposer") - len(proposals)
    assert counter.count("proposer") == asked  # journaled replies are replayed, not asked
    again, counter = optimizer(budget=300, history=path)  # a finished run reruns for free
    again.compile(student(), trainset=rows(), metric=metric)
    assert counter.counts == {} and outline(again.result) == outline(whole.result)


def test_resuming_with_other_settings_is_refused(tmp_path):
    opt, _ = optimizer(budget=60, history=tmp_path / "opro.jsonl")
    opt.compile(student(), trainset=rows(), metric=metric)
    other, counter = optimizer(budget=60, history=tmp_path / "opro.jsonl", per_step=3)
    with pytest.raises(ConfigError, match="per_step"):
        other.compile(student(), trainset=rows(), metric=metric)
    assert counter.counts == {}


def test_no_proposer_bad_settings_and_a_small_budget_are_refused_before_any_call():
    counter = CallCounter()
    lm = bridge_lm(ScriptedLM(answer), counter=counter)
    with pytest.raises(ConfigError, match="needs a proposer") as info:
        OPRO(lm, None, counter, 100)
    assert "role='proposer'" in info.value.fix
    with pytest.raises(ConfigError, match="did you mean 'per_step'"):
        OPRO(lm, lm, counter, 100, per_stepp=2)
    with pytest.raises(ConfigError, match="keep"):
        OPRO(lm, lm, counter, 100, OPROSettings(), keep=0)
    opt, counter = optimizer(budget=23)
    with pytest.raises(BudgetExceeded, match="smaller than one evaluation"):
        opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.counts == {}


def test_a_proposer_budget_stops_the_search():
    opt, counter = optimizer(budget=400, proposer_budget=3)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.count("proposer") == 3 and opt.result.stopped == "proposer"
