"""PerModule: per-stage credit through the final metric, the budget, resume, errors.

The scripted model makes the credit provable. Stage 1 (``extract``: text -> phrase) gives the
review's key word only when its instruction says "step by step", else "a review". Stage 2
(``classify``: phrase -> sentiment) knows "bad" by default and also "awful" when its instruction
says "carefully"; anything else is "positive". On 4 good, 2 bad and 2 awful reviews: baseline
0.5, stage 1 alone 0.75, stage 2 alone 0.5 (it needs the phrase), both 1.0.
"""

import json

import dspy
import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import CallCounter, bridge_lm
from instructkit.optimize.bridge import PROPOSER, TASK, BudgetExceeded
from instructkit.optimize.permodule import PerModule, PerModuleSettings, instructions_of

WORDS = ["good", "bad", "good", "awful", "good", "bad", "good", "awful"]


def answer(request):
    instruction, _, item = request.messages[-1][1].partition("\n\n")
    if item.startswith("Text:"):
        word = next(w for w in ("good", "bad", "awful") if w in item)
        return word if "step by step" in instruction else "a review"
    phrase = item.removeprefix("Phrase:").strip()
    known = ("bad", "awful") if "carefully" in instruction else ("bad",)
    return "negative" if phrase in known else "positive"


class Pipeline(dspy.Module):
    def __init__(self, extract_calls=1):
        super().__init__()
        self.extract_calls = extract_calls
        self.extract = dspy.Predict("text -> phrase")
        self.extract.signature = self.extract.signature.with_instructions(
            "Extract the key phrase of the review."
        )
        self.classify = dspy.Predict("phrase -> sentiment")
        self.classify.signature = self.classify.signature.with_instructions(
            "Classify the sentiment of the phrase as positive or negative."
        )

    def forward(self, text):
        for _ in range(self.extract_calls):
            phrase = self.extract(text=text).phrase
        return self.classify(phrase=phrase)


def rows(n=8):
    return [
        dspy.Example(
            text=f"review {i}: the food was {WORDS[i % 8]}, we said.",
            sentiment="positive" if WORDS[i % 8] == "good" else "negative",
        ).with_inputs("text")
        for i in range(n)
    ]


def metric(example, prediction):
    return float(prediction.sentiment == example.sentiment)


def optimizer(budget, model=None, proposer=None, **kw):
    counter = CallCounter()
    model = model or ScriptedLM(answer)
    task_lm = bridge_lm(model, counter=counter, role=TASK)
    proposer_lm = None if proposer is None else bridge_lm(proposer, counter=counter, role=PROPOSER)
    return PerModule(task_lm, proposer_lm, counter, budget, **kw), counter, model


def test_each_stage_is_credited_by_the_final_metric_with_only_it_changed():
    opt, counter, _ = optimizer(400, seed=0)
    best = opt.compile(Pipeline(), trainset=rows(), metric=metric)
    result = opt.result

    assert result.baseline_score == 0.5 and result.best_score == 1.0
    assert result.total_gain == 0.5
    extract, classify = result.stages
    assert "step by step" in extract.instruction_after
    assert "carefully" in classify.instruction_after
    assert (extract.baseline, extract.alone, extract.gain) == (0.5, 0.75, 0.25)
    assert (classify.alone, classify.gain) == (0.5, 0.0)  # useless without stage 1's phrase
    assert (extract.adopted_gain, classify.adopted_gain) == (0.25, 0.25)
    assert instructions_of(best) == result.best
    assert result.calls_per_item == 2
    assert result.calls[TASK] == counter.count(TASK) <= 400
    assert result.stopped == "converged"  # round 2 adopted nothing, and there is no proposer


@pytest.mark.parametrize("budget", [16, 17, 31, 40, 55, 90])
def test_the_budget_is_never_exceeded(budget):
    opt, counter, model = optimizer(budget, seed=1, rounds=3)
    opt.compile(Pipeline(), trainset=rows(), metric=metric)
    assert len(model.calls) == counter.count(TASK) == opt.result.calls[TASK] <= budget
    assert opt.result.best_score >= opt.result.baseline_score


def test_calls_per_item_are_measured_not_assumed():
    opt, counter, model = optimizer(70, seed=0)
    opt.compile(Pipeline(extract_calls=2), trainset=rows(), metric=metric)
    assert opt.result.calls_per_item == 3
    assert len(model.calls) == counter.count(TASK) <= 70


def test_a_rerun_replays_the_journal_without_calls(tmp_path):
    history = tmp_path / "pm.jsonl"
    opt, _, _ = optimizer(120, seed=2, history=history)
    opt.compile(Pipeline(), trainset=rows(), metric=metric)
    first = opt.result

    again, counter, model = optimizer(120, seed=2, history=history)
    again.compile(Pipeline(), trainset=rows(), metric=metric)
    assert model.calls == [] and counter.count() == 0
    assert again.result.best == first.best
    assert again.result.stages == first.stages
    assert again.result.calls == first.calls


def test_a_killed_run_resumes_where_it_stopped_and_ends_like_an_unkilled_one(tmp_path):
    history = tmp_path / "pm.jsonl"
    opt, _, whole = optimizer(150, seed=3, history=history)
    opt.compile(Pipeline(), trainset=rows(), metric=metric)
    unkilled = opt.result
    lines = history.read_text().splitlines(keepends=True)
    kept = lines[: len(lines) // 3]
    history.write_text("".join(kept) + lines[len(kept)][:10])  # a torn line, as after a kill

    resumed, _, model = optimizer(150, seed=3, history=history)
    resumed.compile(Pipeline(), trainset=rows(), metric=metric)
    spent_before = sum(json.loads(line)["calls"] for line in kept)
    assert len(model.calls) == len(whole.calls) - spent_before
    assert resumed.result.best == unkilled.best
    assert resumed.result.calls == unkilled.calls


def test_other_settings_refuse_to_resume(tmp_path):
    history = tmp_path / "pm.jsonl"
    optimizer(40, seed=0, history=history)[0].compile(Pipeline(), trainset=rows(), metric=metric)
    opt, _, _ = optimizer(40, seed=1, history=history)
    with pytest.raises(ConfigError, match="other settings"):
        opt.compile(Pipeline(), trainset=rows(), metric=metric)


def test_a_proposer_is_grounded_in_the_stage_traces():
    prompts = []

    def propose(request):
        prompt = request.messages[-1][1]
        prompts.append(prompt)
        if "extract: Predict(text -> phrase)  <- the stage to improve" in prompt:
            return "Instruction: Read `text` and give its key word as `phrase`, step by step."
        return "Read `phrase` carefully and give `sentiment`: positive or negative."

    opt, counter, _ = optimizer(
        200, proposer=ScriptedLM(propose), candidates=0, proposals=1, rounds=2
    )
    opt.compile(Pipeline(), trainset=rows(), metric=metric)
    assert opt.result.best_score == 1.0
    assert opt.result.best["extract"].endswith("step by step.")
    first = prompts[0]  # stage 1, from the baseline's failures: what the stage got and gave
    assert "text: review 3: the food was awful" in first
    assert "got: phrase: a review" in first and "expected: final sentiment: negative" in first
    assert opt.result.calls[PROPOSER] == counter.count(PROPOSER) == len(prompts)


def test_settings_are_one_model_and_unknown_keys_are_refused():
    opt, _, _ = optimizer(40, settings=PerModuleSettings(rounds=3), seed=4)
    assert (opt.settings.rounds, opt.settings.seed) == (3, 4)
    with pytest.raises(ConfigError, match="round"):
        optimizer(40, round=3)


class NoPredictors(dspy.Module):
    def forward(self, text):
        return dspy.Prediction(sentiment="positive")


def test_errors_come_before_any_call():
    def raising(example, prediction):
        raise KeyError("label")

    cases = [
        (NoPredictors(), rows(), metric, 100, ConfigError, "no predictors"),
        (
            Pipeline(),
            [dspy.Example(text="x", sentiment="positive")],
            metric,
            100,
            ConfigError,
            "inputs marked",
        ),
        (Pipeline(), rows(), raising, 100, Exception, "metric"),
        (Pipeline(), rows(), metric, 15, BudgetExceeded, "smaller than one evaluation"),
    ]
    for program, data, fn, budget, error, message in cases:
        opt, counter, model = optimizer(budget)
        with pytest.raises(error, match=message):
            opt.compile(program, trainset=data, metric=fn)
        assert model.calls == [] and counter.count() == 0


def test_a_missing_field_names_the_item_before_any_call():
    data = rows()
    data[2] = dspy.Example(text="x").with_inputs("text")
    opt, _, model = optimizer(100)
    with pytest.raises(DataFormatError) as info:
        opt.compile(Pipeline(), trainset=data, metric=metric)
    assert info.value.row == 3 and info.value.field == "sentiment"
    assert model.calls == []


def test_the_counter_budgets_are_restored_after_compile():
    counter = CallCounter(budgets={TASK: 500, PROPOSER: 7})
    task_lm = bridge_lm(ScriptedLM(answer), counter=counter, role=TASK)
    opt = PerModule(task_lm, None, counter, 40)
    opt.compile(Pipeline(), trainset=rows(), metric=metric)
    assert counter.budgets == {TASK: 500, PROPOSER: 7}
    assert counter.count(TASK) <= 40
