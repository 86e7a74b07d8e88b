"""The DSPy bridge: instructkit LMs as DSPy 3.4 engines, the call counter and the budget."""

import dspy
import pytest
from dspy.lm15 import Config, Message, Request

from instructkit.errors import LMError
from instructkit.lm.base import Completion
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import (
    PROPOSER,
    TASK,
    BudgetExceeded,
    CallCounter,
    InstructkitEngine,
    PlainAdapter,
    bridge_lm,
)
from instructkit.optimize.bridge import instructkit_cause, to_chat_request, to_response


def _request(**config):
    return Request(
        model="local/x",
        system="Be brief.",
        messages=(Message.user("Hi"), Message.assistant("Hello"), Message.user("Name a fruit")),
        config=Config(**config),
    )


def test_a_request_maps_to_a_chat_request_with_its_parameters():
    chat = to_chat_request(
        _request(temperature=0.7, max_tokens=12, top_p=0.9, stop=("\n",), seed=5)
    )
    assert chat.messages == (
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Name a fruit"),
    )
    assert (chat.temperature, chat.max_tokens, chat.top_p, chat.stop, chat.seed, chat.n) == (
        0.7,
        12,
        0.9,
        ("\n",),
        5,
        1,
    )


def test_unset_parameters_keep_the_chat_request_defaults():
    chat = to_chat_request(_request())
    assert (chat.temperature, chat.max_tokens, chat.seed, chat.stop) == (0.0, 256, None, ())


def test_a_request_with_a_response_format_is_refused():
    with pytest.raises(LMError, match="response_format"):
        to_chat_request(_request(response_format={"type": "json_object"}))


def test_the_response_keeps_finish_reason_and_usage():
    done = to_response(Completion(["Apple"], 7, 1, ["length"]), "smol")
    assert (done.text, done.finish_reason, done.model) == ("Apple", "length", "smol")
    assert (done.usage.input_tokens, done.usage.output_tokens) == (7, 1)
    odd = to_response(Completion(["x"], 1, 1, ["abandoned"]), "smol")
    assert odd.finish_reason == "error"
    assert odd.provider_data == {"finish_reason": "abandoned"}


def test_a_scripted_lm_answers_dspy_predict_through_the_bridge():
    lm = ScriptedLM(lambda r: "positive\nbecause")
    counter = CallCounter()
    predict = dspy.Predict("text -> sentiment")
    predict.signature = predict.signature.with_instructions("Classify the sentiment.")
    with dspy.context(lm=bridge_lm(lm, counter=counter), adapter=PlainAdapter()):
        result = predict(text="I loved it")
    assert result.sentiment == "positive"
    assert lm.calls[0].messages == (("user", "Classify the sentiment.\n\nText: I loved it"),)
    assert counter.counts == {TASK: 1}


def test_n_greater_than_one_is_counted_as_n_engine_calls():
    lm = ScriptedLM(["a", "b", "c"])
    counter = CallCounter()
    with dspy.context(lm=bridge_lm(lm, counter=counter), adapter=PlainAdapter()):
        result = dspy.Predict("question -> answer", n=3)(question="q")
    assert result.completions.answer == ["a", "b", "c"]
    assert counter.count(TASK) == 3
    assert len(lm.calls) == 3 and all(call.n == 1 for call in lm.calls)


def test_calls_are_counted_per_role():
    counter = CallCounter()
    task = bridge_lm(ScriptedLM(["x"]), counter=counter, role=TASK)
    proposer = bridge_lm(ScriptedLM(["y"]), counter=counter, role=PROPOSER)
    for lm, times in ((task, 2), (proposer, 3)):
        for _ in range(times):
            lm("hello")
    assert counter.counts == {TASK: 2, PROPOSER: 3}
    assert (counter.count(), counter.count(TASK), counter.count(PROPOSER)) == (5, 2, 3)


def test_the_budget_stops_before_the_call_that_would_exceed_it():
    inner = ScriptedLM(["x"])
    counter = CallCounter(budget=2)
    lm = bridge_lm(inner, counter=counter)
    lm("one")
    lm("two")
    with pytest.raises(Exception) as caught:
        lm("three")
    assert isinstance(instructkit_cause(caught.value), BudgetExceeded)
    assert len(inner.calls) == 2  # the third call never reached the model
    assert counter.counts == {TASK: 2}


def test_a_per_role_budget_leaves_the_other_role_free():
    counter = CallCounter(budgets={PROPOSER: 1})
    engine = InstructkitEngine(ScriptedLM(["x"]), counter=counter, role=PROPOSER)
    engine.complete(_request())
    with pytest.raises(BudgetExceeded, match="proposer call would exceed"):
        engine.complete(_request())
    counter.reserve(TASK)
    assert counter.counts == {PROPOSER: 1, TASK: 1}
    assert counter.remaining(TASK) is None and counter.remaining(PROPOSER) == 0


def test_require_refuses_planned_work_larger_than_the_budget():
    counter = CallCounter(budget=10)
    counter.require(10, TASK, "one evaluation")
    with pytest.raises(BudgetExceeded, match="one evaluation needs at least 11 task calls"):
        counter.require(11, TASK, "one evaluation")


@pytest.mark.parametrize("bad", [-1, True])
def test_a_budget_must_be_a_count(bad):
    with pytest.raises(ValueError, match="budget"):
        CallCounter(budget=bad)


def test_the_engine_streams_and_closes_without_closing_the_lm():
    engine = InstructkitEngine(ScriptedLM(["hi there"]))
    events = list(engine.stream(_request()))
    assert events[0].type == "start" and events[-1].type == "end"
    engine.close()
    assert engine.counter.count() == 1


def test_the_budget_holds_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    counter = CallCounter(budget=30)

    def call(_):
        try:
            counter.reserve(TASK)
            return True
        except BudgetExceeded:
            return False

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(call, range(50)))
    assert sum(made) == 30 and counter.count() == 30


def test_the_bridge_never_loads_litellm_and_sets_the_local_cost_map():
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from instructkit.optimize import bridge_lm\n"
        "from instructkit.lm.scripted import ScriptedLM\n"
        "bridge_lm(ScriptedLM(['x']))('hi')\n"
        "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'], 'litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
