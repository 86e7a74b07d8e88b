"""LLM judging killed with SIGKILL at random points and rerun: every judge request is answered
exactly once across the runs (nothing lost, nothing asked twice) and the verdicts equal an
unkilled run's."""

import json
import random
import subprocess
import sys

from killing import complete_rows, kill_when

WORKER = """
import json, sys, time
from instructkit.evaluate.judge import grade
from instructkit.lm.scripted import ScriptedLM

def judge(request):
    time.sleep(0.02)  # the work of a real LM call
    with open(sys.argv[2], "a") as f:  # every request the LM answers, across runs
        f.write(request.messages[-1][1][-40:].replace("\\n", " ") + "\\n")
    return f"Fine. Rating: [[{len(request.messages[-1][1]) % 10 + 1}]]"

items = [(f"Question {i}?", "answer " * (i % 7)) for i in range(120)]
result = grade(ScriptedLM(judge), items, journal=sys.argv[1], batch_size=4, progress=False)
print(json.dumps(result.scores))
"""


def journal_keys(path):
    return [r["key"] for r in complete_rows(path)]


def test_judging_killed_at_random_points_asks_each_request_once(tmp_path):
    journal, asked = tmp_path / "judge.jsonl", tmp_path / "asked.txt"
    ref = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "ref.jsonl"), str(tmp_path / "ref.txt")],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    rng, seen = random.Random(0), []
    for _ in range(4):  # kill when the journal has grown to a random point
        done = len(journal_keys(journal))
        target = rng.randint(done + 1, done + max(1, (120 - done) // 3))
        cmd = [sys.executable, "-c", WORKER, str(journal), str(asked)]
        kill_when(cmd, lambda t=target: len(journal_keys(journal)) >= t, timeout=120)
        seen.append(len(journal_keys(journal)))
    assert all(0 < n < 120 for n in seen), f"a kill did not land mid-job: {seen}"
    final = subprocess.run(
        [sys.executable, "-c", WORKER, str(journal), str(asked)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    keys = journal_keys(journal)
    assert len(keys) == len(set(keys)) == 120  # 0 lost, 0 journaled twice
    assert json.loads(final.stdout) == json.loads(ref.stdout)
    # an answer is lost only when the kill came between the LM's answer and the journal's
    # append: at most one batch (4 requests) per kill is asked again
    n_asked = len(asked.read_text().splitlines())
    assert 120 <= n_asked <= 120 + 4 * 4
