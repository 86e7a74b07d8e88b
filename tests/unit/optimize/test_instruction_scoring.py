"""Scoring instructions and programs, comparing them, and the errors raised before any call."""

import dspy
import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.stats import compare_paired
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import (
    BudgetExceeded,
    CallCounter,
    InstructionTask,
    ItemResult,
    ProgramScore,
    bridge_lm,
    compare_instructions,
    compare_scores,
    named_label,
    score_instruction,
    score_program,
)

TASK = InstructionTask(inputs=("text",), target="label", labels=("positive", "negative"))
ROWS = [
    {"text": "great", "label": "positive"},
    {"text": "awful", "label": "negative"},
    {"text": "lovely", "label": "positive"},
    {"text": "bad", "label": "negative"},
]


def _text(request):
    return request.messages[-1][1].rsplit("Text: ", 1)[1]


def _answers(request):
    """'Always say positive.' -> positive; 'Judge.' -> right on great/awful/bad, wrong on lovely;
    'Ramble.' -> an empty reply (does not parse)."""
    instruction = request.messages[-1][1].split("\n\n")[0]
    if instruction == "Ramble.":
        return "  \n"
    if instruction == "Always say positive.":
        return "Positive"
    return {"great": "positive", "lovely": "negative"}.get(_text(request), "negative")


def test_an_instruction_is_scored_per_item_with_the_label_metric():
    counter = CallCounter()
    lm = bridge_lm(ScriptedLM(_answers), counter=counter)
    result = score_instruction(TASK, "Always say positive.", ROWS, lm=lm)
    assert result.metric == "label"
    assert result.per_item == [1.0, 0.0, 1.0, 0.0]  # "Positive" matches "positive"
    assert result.score == 0.5
    assert result.calls == 4 and counter.count() == 4
    assert result.items[0].outputs == {"label": "Positive"}


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("positive", "positive"),
        ("Positive.", "positive"),
        ("Answer: NEGATIVE!", "negative"),
        ("The text is positive.\nIt is negative too.", "positive"),  # first line only
        ("positive or negative", None),  # names both
        ("The soup was cold.", None),  # names none
        ("positively", None),  # whole words only
    ],
)
def test_named_label(reply, expected):
    assert named_label(reply, ["positive", "negative"]) == expected


def test_the_label_metric_accepts_a_reply_that_names_the_right_label():
    lm = bridge_lm(ScriptedLM(["The text is positive.", "It is positive.", "meh", "negative"]))
    result = score_instruction(TASK, "Judge.", ROWS, lm=lm)
    assert result.per_item == [1.0, 0.0, 0.0, 1.0]
    strict = score_instruction(TASK, "Judge.", ROWS, lm=lm, metric="accuracy")
    assert strict.per_item == [0.0, 0.0, 0.0, 1.0]


def test_a_reply_that_does_not_parse_scores_zero_and_keeps_its_error():
    result = score_instruction(TASK, "Ramble.", ROWS, lm=bridge_lm(ScriptedLM(_answers)))
    assert result.per_item == [0.0] * 4
    assert result.failures == 4
    assert "AdapterParseError" in result.items[0].error


def test_a_callable_metric_and_a_named_one():
    def first_letter(example, prediction):
        return float(prediction.label[:1] == example.label[:1])

    lm = bridge_lm(ScriptedLM(_answers))
    assert score_instruction(TASK, "Judge.", ROWS, lm=lm, metric=first_letter).per_item == [
        1.0,
        1.0,
        0.0,
        1.0,
    ]
    assert score_instruction(TASK, "Judge.", ROWS, lm=lm, metric="exact_match").score == 0.75


def test_instructions_are_compared_with_the_baseline_and_holm_adjusted():
    lm = bridge_lm(ScriptedLM(_answers))
    result = compare_instructions(
        TASK, ["Always say positive.", "Judge.", "Ramble."], ROWS, lm=lm, n_resamples=2000
    )
    assert [s.score for s in result.scores] == [0.5, 0.75, 0.0]
    assert [s.instruction for s in result.scores] == ["Always say positive.", "Judge.", "Ramble."]
    first, second = result.comparisons
    assert (first.index, second.index) == (1, 2)
    # baseline [1,0,1,0]; "Judge." [1,1,0,1]: differences [0,1,-1,1], mean 0.25
    assert first.comparison.diff == pytest.approx(0.25)
    assert (first.comparison.wins, first.comparison.losses, first.comparison.ties) == (2, 1, 1)
    # Holm over the two permutation p-values: sorted p1 <= p2 -> 2*p1, max(2*p1, p2)
    p = sorted([first.comparison.p_permutation, second.comparison.p_permutation])
    holm = sorted([first.p_holm, second.p_holm])
    assert holm == pytest.approx([min(1, 2 * p[0]), max(min(1, 2 * p[0]), p[1])])
    assert result.best.instruction == "Judge."


def _score(name, per_item):
    items = tuple(ItemResult(i, s, {}) for i, s in enumerate(per_item))
    return ProgramScore(name, "accuracy", items)


def test_compare_scores_uses_compare_paired_and_holm_on_hand_values():
    scores = [
        _score("a", [0, 0, 0, 0, 0, 0]),
        _score("b", [1] * 6),
        _score("c", [0, 0, 0, 0, 0, 1]),
    ]
    result = compare_scores(scores, n_resamples=1000)
    b, c = result.comparisons
    assert b.comparison == compare_paired([0] * 6, [1] * 6, n_resamples=1000)
    # exact permutation p: all 6 differences are +1 -> 2/64; one +1 -> 2/2 = 1
    assert b.comparison.p_permutation == pytest.approx(2 / 64)
    assert c.comparison.p_permutation == pytest.approx(1.0)
    assert (b.p_holm, c.p_holm) == pytest.approx((2 * 2 / 64, 1.0))


def test_compare_scores_against_another_baseline():
    scores = [_score("a", [0, 1]), _score("b", [1, 1])]
    result = compare_scores(scores, baseline=1, n_resamples=100)
    assert result.baseline == 1
    assert result.comparisons[0].index == 0
    assert result.comparisons[0].comparison.diff == pytest.approx(-0.5)


def test_compare_scores_refuses_different_item_counts():
    with pytest.raises(ConfigError, match="different numbers of items"):
        compare_scores([_score("a", [1]), _score("b", [1, 0])])


def test_a_whole_program_is_scored():
    class TwoStep(dspy.Module):
        def __init__(self):
            super().__init__()
            self.step = dspy.Predict("text -> label")

        def forward(self, text):
            return self.step(text=text)

    examples = [dspy.Example(**row).with_inputs("text") for row in ROWS]
    lm = bridge_lm(ScriptedLM(["positive"]))
    result = score_program(TwoStep(), examples, "accuracy", lm=lm, target="label")
    assert result.per_item == [1.0, 0.0, 1.0, 0.0]


# --- bad input: a clear error, and no call spent -------------------------------------------


@pytest.fixture
def spy():
    inner = ScriptedLM(["positive"])
    return inner, bridge_lm(inner)


def test_a_missing_field_names_the_row(spy):
    inner, lm = spy
    rows = [*ROWS[:2], {"label": "positive"}]
    with pytest.raises(DataFormatError, match=r"row 3: field 'text': missing the field 'text'"):
        compare_instructions(TASK, ["a", "b"], rows, lm=lm)
    assert inner.calls == []


def test_a_target_outside_the_labels_names_the_row(spy):
    inner, lm = spy
    with pytest.raises(DataFormatError, match="row 2: field 'label'.*'neutral' is not one of"):
        score_instruction(TASK, "a", [ROWS[0], {"text": "meh", "label": "neutral"}], lm=lm)
    assert inner.calls == []


def test_an_empty_dataset_is_refused(spy):
    inner, lm = spy
    with pytest.raises(ConfigError, match="no items"):
        score_instruction(TASK, "a", [], lm=lm)


def test_a_metric_that_raises_on_the_first_item_is_refused_before_any_call(spy):
    inner, lm = spy

    def broken(example, prediction):
        return prediction.nonexistent_field.lower()

    with pytest.raises(ConfigError, match="metric 'broken' failed on item 0"):
        score_instruction(TASK, "a", ROWS, lm=lm, metric=broken)
    assert inner.calls == []


def test_a_metric_that_returns_no_number_is_refused(spy):
    inner, lm = spy
    with pytest.raises(ConfigError, match="returned 'yes' on item 0"):
        score_instruction(TASK, "a", ROWS, lm=lm, metric=lambda e, p: "yes")
    assert inner.calls == []


def test_an_unknown_metric_name_lists_the_known_ones(spy):
    with pytest.raises(ConfigError, match="unknown metric 'acc'.*exact_match"):
        score_instruction(TASK, "a", ROWS, lm=spy[1], metric="acc")


def test_a_budget_smaller_than_the_evaluation_is_refused_before_any_call():
    inner = ScriptedLM(["positive"])
    lm = bridge_lm(inner, counter=CallCounter(budget=7))
    with pytest.raises(BudgetExceeded, match="2 evaluation.*needs at least 8 task calls.*leaves 7"):
        compare_instructions(TASK, ["a", "b"], ROWS, lm=lm)
    assert inner.calls == []


def test_a_budget_that_runs_out_mid_run_surfaces_as_budget_exceeded():
    class AskTwice(dspy.Module):  # two calls per item: more than the preflight's estimate
        def __init__(self):
            super().__init__()
            self.step = dspy.Predict("text -> label")

        def forward(self, text):
            self.step(text=text)
            return self.step(text=text)

    inner = ScriptedLM(["positive"])
    lm = bridge_lm(inner, counter=CallCounter(budget=5))
    examples = [dspy.Example(**row).with_inputs("text") for row in ROWS]
    with pytest.raises(BudgetExceeded, match="call budget exhausted"):
        score_program(AskTwice(), examples, "accuracy", lm=lm, target="label")
    assert len(inner.calls) == 5


def test_a_program_without_predictors_is_refused(spy):
    class Empty(dspy.Module):
        def forward(self, text):
            return dspy.Prediction(label="x")

    examples = [dspy.Example(**ROWS[0]).with_inputs("text")]
    with pytest.raises(ConfigError, match="no predictors"):
        score_program(Empty(), examples, "accuracy", lm=spy[1], target="label")


def test_examples_without_inputs_marked_are_refused(spy):
    program = dspy.Predict("text -> label")
    with pytest.raises(ConfigError, match="with_inputs"):
        score_program(program, [dspy.Example(**ROWS[0])], "accuracy", lm=spy[1], target="label")


def test_no_lm_at_all_is_refused():
    with pytest.raises(ConfigError, match="no LM to run the program"):
        score_instruction(TASK, "a", ROWS)


def test_a_bad_task_definition_is_refused():
    with pytest.raises(ConfigError, match="distinct from the target"):
        InstructionTask(inputs=("label",), target="label")
