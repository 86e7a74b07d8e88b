"""Evolutionary search killed with SIGKILL at random points and rerun: no scored item is lost or
journaled twice, the final result equals an unkilled run's, and only the items in flight at each
kill are spent again (the journal holds one row per scored item)."""

import json
import random
import subprocess
import sys

from killing import complete_rows, kill_when

WORKER = """
import json, sys, time
import dspy
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize import CallCounter, Evolutionary, bridge_lm

KEYS = ["carefully", "exactly", "only", "evidence"]

def answer(request):
    time.sleep(0.004)  # the work of a real LM call
    with open(sys.argv[2], "a") as f:  # every task call, across runs
        f.write("call\\n")
    instruction, _, rest = request.messages[-1][1].partition("\\n\\n")
    text = rest.split("Text: ", 1)[1]
    if "good" in text:
        return "positive"
    return "negative" if KEYS[int(text.split()[1]) % 4] in instruction.lower() else "positive"

def metric(example, prediction):
    return float(prediction.label.strip().lower() == example.label)

rows = [
    dspy.Example(text=f"item {i} {'good' if i % 2 else 'bad'}",
                 label="positive" if i % 2 else "negative").with_inputs("text")
    for i in range(24)
]
student = dspy.Predict("text -> label")
START = "Classify the sentiment as positive or negative."
student.signature = student.signature.with_instructions(START)
counter = CallCounter()
lm = bridge_lm(ScriptedLM(answer), counter=counter)
opt = Evolutionary(lm, None, counter, 500, seed=1, minibatch=8, population=6, generations=30,
                   patience=30, history=sys.argv[1])
program = opt.compile(student, trainset=rows, metric=metric)
r = opt.result
print(json.dumps([r.best_instruction, r.best_score, r.calls["task"], r.stopped,
                  program.predictors()[0].signature.instructions]))
"""

# Task calls a kill can waste: the Evaluator scores a chunk of items at once (the bridge's
# max_batch, 16) and journals the chunk when it ends, so the chunk in flight is spent again.
IN_FLIGHT = 16


def journal_keys(path):
    return [(r["phase"], r["instruction"], r["item"]) for r in complete_rows(path)]


def test_a_search_killed_at_random_points_loses_and_repeats_no_scored_item(tmp_path):
    journal, calls = tmp_path / "evo.jsonl", tmp_path / "calls.txt"
    ref = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "ref.jsonl"), str(tmp_path / "ref.txt")],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    reference = journal_keys(tmp_path / "ref.jsonl")
    rng, seen = random.Random(0), []
    for _ in range(4):  # kill when the journal has grown to a random point (timing-independent)
        done = len(journal_keys(journal))
        target = rng.randint(done + 1, done + (len(reference) - done) // 3)
        cmd = [sys.executable, "-c", WORKER, str(journal), str(calls)]
        kill_when(cmd, lambda t=target: len(journal_keys(journal)) >= t, timeout=120)
        seen.append(len(journal_keys(journal)))
    assert all(0 < n < len(reference) for n in seen), f"a kill did not land mid-search: {seen}"
    final = subprocess.run(
        [sys.executable, "-c", WORKER, str(journal), str(calls)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    keys = journal_keys(journal)
    assert len(keys) == len(set(keys))  # 0 journaled twice
    assert keys == reference  # 0 lost, same order as the unkilled run
    assert json.loads(final.stdout) == json.loads(ref.stdout)
    spent = len(calls.read_text().splitlines())
    ref_calls = json.loads(ref.stdout)[2]
    assert ref_calls <= 500
    assert ref_calls <= spent <= ref_calls + 4 * IN_FLIGHT  # only the chunk in flight
