"""Batching in the DSPy bridge and concurrent scoring: concurrent calls reach the LM together,
each caller gets its own answer, counts and budgets stay exact, results match one thread."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest
from dspy.lm15 import Message, Request

from instructkit.errors import LMError
from instructkit.jobs import Job
from instructkit.lm.base import ChatRequest, Completion
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import (
    BudgetExceeded,
    CallCounter,
    InstructionTask,
    InstructkitEngine,
    bridge_lm,
    score_instruction,
    score_program,
)
from instructkit.optimize.scoring import NotScored, default_threads, score_each
from instructkit.optimize.search import Evaluator

LABELS = ("positive", "negative")


class RecordingLM:
    """Answers ``"answer to <last user message>"``; records the size of every batch."""

    name = "recording"

    def __init__(self, fail: Exception | None = None, short: bool = False) -> None:
        self.batches: list[int] = []
        self.requests: list[ChatRequest] = []
        self.fail, self.short = fail, short
        self._lock = threading.Lock()

    def complete(self, requests, *, progress=False):
        with self._lock:
            self.batches.append(len(requests))
            self.requests.extend(requests)
        if self.fail is not None:
            raise self.fail
        out = [Completion([f"answer to {r.messages[-1][1]}"]) for r in requests]
        return out[:-1] if self.short else out


def _request(text):
    return Request(model="local/x", messages=(Message.user(text),))


def _call_all(engine, n):
    """``n`` threads call ``engine.complete`` at once; each returns its text or its error."""
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        try:
            return engine.complete(_request(f"question {i}")).text
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_calls_go_to_the_lm_in_one_batch_and_each_caller_gets_its_own_answer():
    lm, counter = RecordingLM(), CallCounter()
    engine = InstructkitEngine(lm, counter=counter, max_batch=16, batch_window=1.0)
    answers = _call_all(engine, 16)
    assert answers == [f"answer to question {i}" for i in range(16)]
    assert lm.batches == [16]
    assert engine.batch_sizes == {16: 1}
    assert counter.counts == {"task": 16}


def test_batches_hold_at_most_max_batch_requests():
    lm = RecordingLM()
    engine = InstructkitEngine(lm, max_batch=4, batch_window=1.0)
    answers = _call_all(engine, 16)
    assert answers == [f"answer to question {i}" for i in range(16)]
    assert lm.batches == [4, 4, 4, 4]
    assert engine.counter.count() == 16


def test_max_batch_1_sends_every_call_alone():
    lm = RecordingLM()
    engine = InstructkitEngine(lm, max_batch=1)
    assert _call_all(engine, 8) == [f"answer to question {i}" for i in range(8)]
    assert lm.batches == [1] * 8
    assert engine.batch_sizes == {}


def test_a_lone_caller_does_not_wait_for_a_batch_to_fill():
    engine = InstructkitEngine(RecordingLM(), max_batch=16, batch_window=1.0)
    engine.complete(_request("first"))  # nothing known yet: waits for company once
    started = time.monotonic()
    for i in range(5):
        assert engine.complete(_request(f"q{i}")).text == f"answer to q{i}"
    assert time.monotonic() - started < 1.0  # 5 s if each call waited the window
    assert engine.batch_sizes == {1: 6}


def test_a_budget_is_never_exceeded_by_concurrent_callers():
    lm, counter = RecordingLM(), CallCounter(budget=10)
    engine = InstructkitEngine(lm, counter=counter, max_batch=16, batch_window=0.2)
    outcomes = _call_all(engine, 16)
    answered = [i for i, o in enumerate(outcomes) if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert (len(answered), len(refused)) == (10, 6)
    assert len(lm.requests) == 10 and counter.count() == 10
    assert all(outcomes[i] == f"answer to question {i}" for i in answered)  # each its own
    assert sorted(r.messages[-1][1] for r in lm.requests) == sorted(
        f"question {i}" for i in answered
    )


def test_a_failed_batch_raises_its_error_in_every_caller_and_the_engine_keeps_working():
    boom = RuntimeError("the model crashed")
    lm, counter = RecordingLM(fail=boom), CallCounter()
    engine = InstructkitEngine(lm, counter=counter, max_batch=8, batch_window=0.3)
    assert _call_all(engine, 8) == [boom] * 8
    assert counter.count() == 8  # the calls were spent
    lm.fail = None
    assert _call_all(engine, 3) == [f"answer to question {i}" for i in range(3)]


def test_a_leader_interrupted_while_gathering_lets_the_others_finish():
    engine = InstructkitEngine(RecordingLM(), max_batch=8, batch_window=0.3)
    batcher = engine._batcher

    class Interrupting(threading.Condition):
        def wait(self, timeout=None):
            if threading.current_thread().name == "victim":
                while len(batcher._queue) < 4:  # the others queue behind the gathering leader
                    super().wait(0.01)
                raise KeyboardInterrupt  # as Ctrl-C would
            return super().wait(timeout)

    batcher._cond, results = Interrupting(), {}

    def call(name):
        try:
            results[name] = engine.complete(_request(name)).text
        except KeyboardInterrupt:
            results[name] = "interrupted"

    threads = [threading.Thread(target=call, args=(n,), name=n) for n in ("victim", "a", "b", "c")]
    threads[0].start()
    while batcher._gathering is None:  # the victim leads
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a caller was left waiting"
    assert results == {
        "victim": "interrupted",
        "a": "answer to a",
        "b": "answer to b",
        "c": "answer to c",
    }
    assert engine.batch_sizes == {3: 1}


def test_an_lm_that_returns_too_few_completions_fails_every_caller():
    engine = InstructkitEngine(RecordingLM(short=True), max_batch=4, batch_window=1.0)
    outcomes = _call_all(engine, 4)
    assert all(isinstance(o, LMError) and "3 completions for 4" in str(o) for o in outcomes)


def test_bridge_lm_batches_calls_made_through_dspy_on_several_threads():
    lm = RecordingLM()
    task_lm = bridge_lm(lm, counter=CallCounter(), max_batch=8, batch_window=1.0)
    start = threading.Barrier(8)

    def ask(i):
        start.wait()
        return task_lm(f"q{i}")[0]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == [f"answer to q{i}" for i in range(8)]
    assert lm.batches == [8]
    assert task_lm.engine.counter.count() == 8


def test_bridge_lm_refuses_a_max_batch_below_1():
    with pytest.raises(ValueError, match="max_batch"):
        bridge_lm(RecordingLM(), max_batch=0)


def test_a_tally_counts_only_the_calls_of_its_own_thread():
    counter = CallCounter()
    engine = InstructkitEngine(RecordingLM(), counter=counter, max_batch=8, batch_window=0.05)
    start = threading.Barrier(4)

    def calls_of(k):
        start.wait()
        with counter.tally() as mine:
            for j in range(k):
                engine.complete(_request(f"{k}-{j}"))
        return mine

    with ThreadPoolExecutor(4) as pool:
        tallies = list(pool.map(calls_of, [1, 2, 3, 4]))
    assert tallies == [{"task": 1}, {"task": 2}, {"task": 3}, {"task": 4}]
    assert counter.count() == 10


# ------------------------------------------------------------------------- concurrent scoring


def _answer(request):
    """Right on texts with 'good'/'bad' of even length, wrong otherwise: the score varies."""
    text = request.messages[-1][1]
    right = "positive" if "good" in text else "negative"
    return right if len(text) % 2 == 0 else LABELS[right == "positive"]


def _rows(n=24):
    return [
        {"text": f"review {i} {'x' * (i % 7)} was {'good' if i % 2 else 'bad'}", "label": lab}
        for i, lab in ((i, LABELS[1 - i % 2]) for i in range(n))
    ]


TASK = InstructionTask(inputs=("text",), target="label", labels=LABELS)


def test_scoring_on_threads_gives_the_results_of_one_thread_and_batches_calls():
    rows = _rows()
    one = score_instruction(TASK, "Label it.", rows, lm=bridge_lm(ScriptedLM(_answer)), threads=1)
    sizes: list[int] = []
    scripted = ScriptedLM(_answer)

    class Batches:
        name = "scripted"

        def complete(self, requests, *, progress=False):
            sizes.append(len(requests))
            return scripted.complete(requests)

    task_lm = bridge_lm(Batches(), counter=CallCounter(budget=24), max_batch=8, batch_window=1.0)
    many = score_instruction(TASK, "Label it.", rows, lm=task_lm, threads=8)
    assert many.items == one.items
    assert 0 < many.score < 1 and many.calls == 24
    assert max(sizes) > 1 and sum(sizes) == 24
    assert [item.calls for item in many.items] == [1] * 24


class Repeats(dspy.Module):
    """Calls its predictor 1, 2 or 3 times depending on the item."""

    def __init__(self):
        super().__init__()
        self.predict = dspy.Predict("text -> label")

    def forward(self, text):
        for _ in range(int(text.split()[1]) % 3):
            self.predict(text=text)
        return self.predict(text=text)


def test_each_item_is_attributed_its_own_calls_when_items_run_at_once():
    examples = [
        dspy.Example(text=f"review {i}", label="positive").with_inputs("text") for i in range(12)
    ]
    lm = bridge_lm(ScriptedLM(_answer), counter=CallCounter(), batch_window=0.05)
    scored = score_program(Repeats(), examples, "accuracy", lm=lm, target="label", threads=6)
    assert [item.calls for item in scored.items] == [i % 3 + 1 for i in range(12)]
    assert scored.calls == sum(i % 3 + 1 for i in range(12)) == lm.engine.counter.count()


def test_worker_threads_see_the_callers_dspy_settings():
    lm = bridge_lm(ScriptedLM(_answer))
    with dspy.context(lm=lm):  # no lm= argument: the workers must find it in the context
        scored = score_instruction(TASK, "Label it.", _rows(8), threads=4)
    assert scored.calls == 8 and scored.failures == 0


def test_the_default_threads_follow_the_bridges_batch_size():
    assert default_threads(bridge_lm(ScriptedLM(_answer))) == 16
    assert default_threads(bridge_lm(ScriptedLM(_answer), max_batch=4)) == 4
    assert default_threads(bridge_lm(ScriptedLM(_answer), max_batch=1)) == 1
    assert default_threads(dspy.utils.DummyLM([{"label": "positive"}])) == 1


def test_score_each_keeps_the_scored_items_when_the_budget_runs_out_midway():
    counter = CallCounter(budget=5)
    lm = bridge_lm(ScriptedLM(_answer), counter=counter, batch_window=0.05)
    examples = TASK.examples(_rows(8))
    outcomes = score_each(
        TASK.program("Label it."), examples, TASK.label_metric(), lm=lm, target="label", threads=8
    )
    scored = [o for o in outcomes if not isinstance(o, Exception)]
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(scored) == 5 and counter.count() == 5
    assert failed and all(isinstance(e, (BudgetExceeded, NotScored)) for e in failed)
    assert any(isinstance(e, BudgetExceeded) for e in failed)


def _messages(error):
    seen = []
    while error is not None and len(seen) < 10:
        seen.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(seen)


def test_score_program_raises_the_first_failed_item_in_item_order():
    def answer(request):
        for i in (5, 6):
            if f"review {i} " in request.messages[-1][1]:
                raise RuntimeError(f"backend down at {i}")
        return "positive"

    lm = bridge_lm(ScriptedLM(answer), max_batch=1)
    with pytest.raises(Exception) as raised:
        score_instruction(TASK, "Label it.", _rows(8), lm=lm, threads=8)
    assert "backend down at 5" in _messages(raised.value)


def test_threads_below_1_are_refused():
    with pytest.raises(Exception, match="threads"):
        score_instruction(TASK, "Label it.", _rows(2), lm=bridge_lm(ScriptedLM(_answer)), threads=0)


# ------------------------------------------------------------------------------- Evaluator


def _evaluator(tmp_path, counter, lm, threads, seen):
    job = Job(tmp_path / "history.jsonl", {"test": 1})
    lms = {"val": bridge_lm(lm, counter=counter, max_batch=threads, batch_window=0.3)}
    examples = {"val": TASK.examples(_rows(10))}
    metric = ("label", TASK.label_metric())
    return Evaluator(job, TASK, metric, lms, examples, on_call=seen.append, threads=threads)


def test_the_evaluator_journals_rows_in_item_order_chunk_by_chunk(tmp_path):
    sizes: list[int] = []
    scripted = ScriptedLM(_answer)

    class Batches:
        name = "scripted"

        def complete(self, requests, *, progress=False):
            sizes.append(len(requests))
            return scripted.complete(requests)

    seen: list[int] = []
    evaluator = _evaluator(tmp_path, CallCounter(), Batches(), 4, seen)
    rows = evaluator.rows("Label it.", range(10))
    assert [r["item"] for r in rows] == list(range(10))
    assert [r["item"] for r in evaluator.job.records] == list(range(10))
    assert max(sizes) > 1 and max(sizes) <= 4 and sum(sizes) == 10
    assert seen == [1] * 10 and evaluator.spent() == 10


def test_the_evaluator_resumes_without_rescoring_the_journaled_items(tmp_path):
    counter = CallCounter(budget=6)
    first = _evaluator(tmp_path, counter, ScriptedLM(_answer), 4, [])
    with pytest.raises(BudgetExceeded):
        first.rows("Label it.", range(10))
    journaled = [r["item"] for r in first.job.records]
    assert len(journaled) == 6 and journaled[:4] == [0, 1, 2, 3]
    assert journaled == sorted(journaled)  # each chunk in item order
    lm = ScriptedLM(_answer)
    again = _evaluator(tmp_path, CallCounter(), lm, 4, [])
    rows = again.rows("Label it.", range(10))
    assert [r["item"] for r in rows] == list(range(10))
    assert len(lm.calls) == 4  # only the items the first run did not journal
    assert sorted(r["item"] for r in again.job.records) == list(range(10))
    assert again.spent() == 10
