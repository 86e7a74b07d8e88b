"""Evolutionary instruction search on a scripted task model whose accuracy depends on words in
the instruction: it improves, never exceeds its budget, is seeded, resumes, refuses bad input
before any call."""

import json
import random

import dspy
import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import BudgetExceeded, CallCounter, Evolutionary, bridge_lm
from instructkit.optimize.propose import (
    clean_proposal,
    crossover_sentences,
    mutate_text,
    proposal_problems,
    split_sentences,
)

KEYS = ["carefully", "exactly", "only", "evidence"]  # each unlocks a quarter of the negatives
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


def search(budget=300, script=answer, history=None, proposer=None, **kw):
    counter = CallCounter()
    lm = bridge_lm(ScriptedLM(script), counter=counter)
    proposer_lm = None
    if proposer is not None:
        proposer_lm = bridge_lm(ScriptedLM(proposer), counter=counter, role="proposer")
    settings = {"seed": 0, "minibatch": 8, "population": 6, "history": history, **kw}
    return Evolutionary(lm, proposer_lm, counter, budget, **settings), counter


def outline(result):
    return [(r["generation"], r["kind"], r["instruction"], r["score"]) for r in result.history]


# ------------------------------------------------------------------------------------- search


def test_search_improves_on_the_starting_instruction():
    opt, counter = search(budget=400)
    original = student()
    program = opt.compile(original, trainset=rows(), metric=metric)
    result = opt.result
    assert result.baseline_score == 0.5
    assert result.best_score >= 0.75 > result.baseline_score
    assert program.predictors()[0].signature.instructions == result.best_instruction
    assert original.signature.instructions == START  # the student is not changed
    full = [r for r in result.history if r["kind"] == "full"]
    assert max(r["score"] for r in full) == result.best_score  # best = best full score
    assert result.calls["task"] == counter.count("task") == result.history[-1]["calls_total"]
    assert result.history[0]["operator"] == "baseline" and result.history[0]["n"] == 24
    assert result.wall_time > 0


@pytest.mark.parametrize("budget", [24, 31, 57, 130, 333])
def test_the_budget_is_never_exceeded(budget):
    opt, counter = search(budget=budget, generations=50, patience=50)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.count("task") <= budget
    assert opt.result.calls["task"] == counter.count("task")
    assert opt.result.stopped == "budget"
    assert budget - counter.count("task") < 24  # it stopped only when a full run did not fit
    assert counter.budgets == {}  # the backstop is lifted after the run


def test_a_counter_with_its_own_smaller_budget_stops_the_search_cleanly():
    counter = CallCounter(budget=70)
    lm = bridge_lm(ScriptedLM(answer), counter=counter)
    opt = Evolutionary(lm, None, counter, 500, seed=0, minibatch=8, population=6)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.count() <= 70 and opt.result.stopped == "budget"


def test_the_same_seed_gives_the_same_search_and_another_seed_another():
    runs = []
    for seed in (3, 3, 4):
        opt, _ = search(budget=200, seed=seed)
        opt.compile(student(), trainset=rows(), metric=metric)
        runs.append((outline(opt.result), opt.result.best_instruction))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_no_instruction_is_evaluated_twice_and_near_duplicates_are_refused():
    opt, _ = search(budget=400, novelty=0.8)
    opt.compile(student(), trainset=rows(), metric=metric)
    seen = [(r["kind"], r["instruction"].lower()) for r in opt.result.history]
    assert len(seen) == len(set(seen))
    assert any("near duplicate" in reason for _, reason in opt.result.rejected)


def test_a_valset_is_used_for_fitness_and_the_trainset_for_the_summary():
    opt, _ = search(budget=200)
    opt.compile(student(), trainset=rows(10), valset=rows(16), metric=metric)
    assert {r["n"] for r in opt.result.history if r["kind"] == "full"} == {16}
    assert {r["n"] for r in opt.result.history if r["kind"] == "minibatch"} == {8}


def test_initial_candidates_join_the_first_generation():
    opt, _ = search(budget=200, initial=[START + " Read the text carefully.", "   "])
    opt.compile(student(), trainset=rows(), metric=metric)
    ops = [(r["operator"], r["instruction"]) for r in opt.result.history]
    assert ("initial", START + " Read the text carefully.") in ops
    assert ("   ", "empty") in opt.result.rejected


# ----------------------------------------------------------------------------- LM mutations


def test_the_proposer_sees_failures_and_the_data_summary_and_bad_proposals_are_refused():
    prompts = []

    def proposer(request):
        prompts.append(request.messages[-1][1])
        k = len(prompts)
        if k % 3 == 0:
            return "Instruction: Say something."  # drops the labels: refused
        return f'"{START} Weigh the evidence {k} carefully."'

    opt, counter = search(budget=300, proposer=proposer)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert "expected: negative | got: positive" in prompts[0]
    assert "Labels: negative 12 (50%), positive 12 (50%)." in prompts[0]
    assert "Predict(text -> label)" in prompts[0]
    history = opt.result.history
    assert any("lm_mutation" in r["operator"] for r in history)
    assert any(r["instruction"].endswith("Weigh the evidence 1 carefully.") for r in history)
    assert any(reason.startswith("proposer: does not name") for _, reason in opt.result.rejected)
    assert opt.result.calls["proposer"] == counter.count("proposer") == len(prompts)
    assert opt.result.best_score >= 0.75


def test_a_proposer_budget_falls_back_to_text_operators():
    opt, counter = search(budget=300, proposer=lambda r: START + " Be exact.", proposer_budget=2)
    opt.compile(student(), trainset=rows(), metric=metric)
    assert counter.count("proposer") == 2
    assert len(opt.result.history) > 4


# ------------------------------------------------------------------------------------ resume


class Dies:
    """The scripted task model, dying (like a killed process) after ``k`` calls."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self, request):
        self.calls += 1
        if self.calls > self.k:
            raise RuntimeError("killed")
        return answer(request)


def test_a_crashed_run_resumes_without_spending_journaled_calls(tmp_path):
    whole, whole_counter = search(budget=300, history=tmp_path / "whole.jsonl")
    whole.compile(student(), trainset=rows(), metric=metric)
    whole_lines = [r for r in (tmp_path / "whole.jsonl").read_text().splitlines() if r]
    path = tmp_path / "evo.jsonl"
    for k in (50, 137):  # two crashes, each in the middle of an evaluation
        crashed, _ = search(budget=300, script=Dies(k), history=path)
        with pytest.raises(Exception, match="killed"):
            crashed.compile(student(), trainset=rows(), metric=metric)
    # one journal row per scored item: a kill loses only the item in flight
    journaled = [json.loads(r) for r in path.read_text().splitlines() if r]
    assert 0 < len(journaled) < len(whole_lines)
    resumed, counter = search(budget=300, history=path)
    resumed.compile(student(), trainset=rows(), metric=metric)
    assert outline(resumed.result) == outline(whole.result)
    assert resumed.result.best_instruction == whole.result.best_instruction
    already = sum(r["calls"] for r in journaled)
    assert counter.count("task") == whole_counter.count("task") - already  # nothing re-spent
    lines = [r for r in path.read_text().splitlines() if r]
    assert len(lines) == len(whole_lines)  # 0 lost, 0 duplicated


def test_a_resumed_run_replays_journaled_proposals_without_calling_the_proposer(tmp_path):
    def proposer(request):
        return f"{START} Read it carefully {len(request.messages[-1][1]) % 7}."

    path = tmp_path / "evo.jsonl"
    first, c1 = search(budget=150, history=path, proposer=proposer)
    first.compile(student(), trainset=rows(), metric=metric)
    again, c2 = search(budget=150, history=path, proposer=proposer)
    again.compile(student(), trainset=rows(), metric=metric)
    assert c1.count("proposer") > 0 and c2.counts == {}
    assert outline(again.result) == outline(first.result)


def test_resuming_with_other_settings_is_refused(tmp_path):
    opt, _ = search(budget=60, history=tmp_path / "evo.jsonl")
    opt.compile(student(), trainset=rows(), metric=metric)
    other, counter = search(budget=60, history=tmp_path / "evo.jsonl", population=5)
    with pytest.raises(ConfigError, match="population"):
        other.compile(student(), trainset=rows(), metric=metric)
    assert counter.counts == {}


# ------------------------------------------------------------------------ bad input, no call


def _raises(example, prediction):
    raise KeyError("score")


class TwoSteps(dspy.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = dspy.Predict("text -> label"), dspy.Predict("label -> text")


@pytest.mark.parametrize(
    "program,data,score,budget,error,match",
    [
        (student(), rows(), _raises, 100, ConfigError, "metric '_raises' failed"),
        (student(), [*rows(3), dspy.Example(text="x").with_inputs("text")], metric, 100,
         DataFormatError, "missing a field"),
        (student(), [{"text": "x", "label": "positive"}], metric, 100, ConfigError, "dspy.Example"),
        (student(), rows(), metric, 23, BudgetExceeded, "smaller than one evaluation"),
        (dspy.Module(), rows(), metric, 100, ConfigError, "no predictors"),
        (TwoSteps(), rows(), metric, 100, ConfigError, "has 2 predictors"),
        (student(), [], metric, 100, ConfigError, "empty"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_any_call(program, data, score, budget, error, match):
    opt, counter = search(budget=budget)
    with pytest.raises(error, match=match):
        opt.compile(program, trainset=data, metric=score)
    assert counter.counts == {}


def test_bad_settings_and_an_uncounted_task_lm_are_refused():
    counter = CallCounter()
    with pytest.raises(ConfigError, match="elite=3 must be smaller than population=3"):
        Evolutionary(bridge_lm(ScriptedLM(answer), counter=counter), None, counter, 10,
                     population=3, elite=3)  # fmt: skip
    with pytest.raises(ConfigError, match="not counted by this counter"):
        Evolutionary(bridge_lm(ScriptedLM(answer)), None, counter, 10)


# ----------------------------------------------------------------------------- text operators


def test_sentences_split_and_cross_over_without_repeats():
    assert split_sentences(" One. Two!  Three? e.g.x") == ["One.", "Two!", "Three?", "e.g.x"]
    child = crossover_sentences("A one. B one. C one.", "X two. B one. Z two.", random.Random(1))
    parts = split_sentences(child)
    assert len(parts) == len(set(parts)) and parts[0] == "A one."
    assert set(parts) <= {"A one.", "B one.", "C one.", "X two.", "Z two."}


def test_text_mutations_swap_insert_or_drop_one_sentence():
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        child, name = mutate_text("A b. C d.", ["New one."], rng)
        seen.add(name)
        n = len(split_sentences(child))
        assert n == {"swap": 2, "insert": 3, "drop": 1}[name]
    assert seen == {"swap", "insert", "drop"}
    assert mutate_text("Only.", [], rng) == ("Only.", "none")


def test_proposals_are_cleaned_and_checked():
    assert clean_proposal('Improved instruction: "Say yes or no."\n\nWhy: ...') == "Say yes or no."
    assert clean_proposal("```\nLabel it.\n```") == "Label it."
    assert proposal_problems("  ", required=[], max_chars=10) == ["empty"]
    assert proposal_problems("Say yes.", required=["yes", "no"], max_chars=5) == [
        "longer than 5 characters (8)",
        "does not name ['no']",
    ]


def test_settings_come_whole_or_as_overrides_and_unknown_keys_are_named():
    from instructkit.optimize.evolutionary import EvolutionSettings

    counter = CallCounter()
    lm = bridge_lm(ScriptedLM(answer), counter=counter)
    opt = Evolutionary(lm, None, counter, 50, EvolutionSettings(population=5), seed=2)
    assert (opt.settings.population, opt.settings.seed, opt.settings.elite) == (5, 2, 2)
    with pytest.raises(ConfigError, match="did you mean 'population'"):
        Evolutionary(lm, None, counter, 50, populaton=5)
    with pytest.raises(ConfigError, match="budget=0"):
        Evolutionary(lm, None, counter, 0)


class Twice(dspy.Module):
    """One predictor called twice per item: more calls than the search plans for."""

    def __init__(self):
        super().__init__()
        self.step = student()

    def forward(self, text):
        self.step(text=text)
        return self.step(text=text)


def test_a_program_that_calls_more_than_once_per_item_is_planned_for():
    opt, counter = search(budget=60)
    opt.compile(Twice(), trainset=rows(), metric=metric)
    # the baseline measured 2 calls per item; a minibatch of 8 (16 calls) no longer fits
    assert counter.count("task") == 48
    assert opt.result.stopped == "budget" and opt.result.best_instruction == START


def test_the_backstop_stops_an_evaluation_that_overruns_the_budget():
    opt, counter = search(budget=30)
    with pytest.raises(BudgetExceeded, match="ran out while scoring the student"):
        opt.compile(Twice(), trainset=rows(), metric=metric)
    assert counter.count("task") == 30  # cut at the budget, not past it
    assert counter.budgets == {}


def test_a_resumed_run_with_a_smaller_budget_ends_like_a_run_with_that_budget(tmp_path):
    opt, _ = search(budget=200, history=tmp_path / "evo.jsonl")
    opt.compile(student(), trainset=rows(), metric=metric)
    small, _ = search(budget=90)
    small.compile(student(), trainset=rows(), metric=metric)
    resumed, counter = search(budget=90, history=tmp_path / "evo.jsonl")
    resumed.compile(student(), trainset=rows(), metric=metric)
    assert counter.counts == {}  # all replayed
    assert outline(resumed.result) == outline(small.result)
    assert resumed.result.calls["task"] == small.result.calls["task"] <= 90


def test_progress_shows_the_task_calls_spent(capsys):
    opt, counter = search(budget=100, progress=True)
    opt.compile(student(), trainset=rows(), metric=metric)
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("evolutionary") and f"{counter.count('task')}/100" in last


def test_a_given_adapter_prompts_the_task_model():
    prompts = []

    def chat(request):  # answers in ChatAdapter's format
        prompts.append(request.messages[-1][1])
        return "[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]"

    opt, counter = search(budget=24, script=chat, adapter=dspy.ChatAdapter())
    opt.compile(student(), trainset=rows(), metric=metric)
    assert all("[[ ## text ## ]]" in p for p in prompts) and len(prompts) == 24
    assert opt.result.baseline_score == 0.5  # the replies were parsed: every positive is right
