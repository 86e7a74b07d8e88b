"""Self-Instruct killed with SIGKILL at random points and rerun: the output equals an unkilled
run's, row for row (nothing lost, nothing written twice)."""

import random
import subprocess
import sys
from pathlib import Path

from killing import complete_rows, kill_when

UNIT_TESTS = Path(__file__).resolve().parents[1] / "unit" / "synth" / "test_self_instruct.py"

WORKER = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("si_tests", {str(UNIT_TESTS)!r})
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
from instructkit.lm.scripted import ScriptedLM
from instructkit.synth.seeds import load_seed_tasks
from instructkit.synth.self_instruct import SelfInstructConfig, run_self_instruct

def slow(request):
    time.sleep(0.01)  # the work of a real LM call
    return tests.plausible(request)

cfg = SelfInstructConfig(num_instructions=60, prompts_per_round=2)
run_self_instruct(cfg, ScriptedLM(slow), load_seed_tasks().tasks, sys.argv[1], progress=False)
"""


def test_self_instruct_killed_at_random_points_equals_an_unkilled_run(tmp_path):
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-c", WORKER, str(ref)], check=True, timeout=300)
    total = len(complete_rows(ref))
    rng, seen = random.Random(0), []
    for _ in range(4):  # kill when the output has grown to a random point
        done = len(complete_rows(out))
        target = rng.randint(done + 1, done + max(1, (total - done) // 3))
        cmd = [sys.executable, "-c", WORKER, str(out)]
        kill_when(cmd, lambda t=target: len(complete_rows(out)) >= t, timeout=120)
        seen.append(len(complete_rows(out)))
    assert all(0 < n < total for n in seen), f"a kill did not land mid-job: {seen}"
    subprocess.run([sys.executable, "-c", WORKER, str(out)], check=True, timeout=300)
    got = complete_rows(out)
    assert [r["id"] for r in got] == [
        r["id"] for r in complete_rows(ref)
    ]  # 0 lost, 0 twice, in order
    assert got == complete_rows(ref)
