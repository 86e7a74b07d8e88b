"""Self-Instruct killed with SIGKILL at random points and rerun: the output equals an unkilled
run's, row for row (nothing lost, nothing written twice)."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def rows(path):
    if not path.exists():
        return []
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(x) for x in complete if x.strip()]


def test_self_instruct_killed_at_random_points_equals_an_unkilled_run(tmp_path):
    ref, out = tmp_path / "ref.jsonl", tmp_path / "out.jsonl"
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", WORKER, str(ref)], check=True, timeout=300)
    whole = time.monotonic() - started  # kills land at random fractions of an unkilled run
    rng, seen = random.Random(0), []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(out)])
        time.sleep(rng.uniform(0.4, 0.8) * whole)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(len(rows(out)))
    assert any(0 < n < 60 for n in seen), f"no kill landed mid-job: {seen}"
    subprocess.run([sys.executable, "-c", WORKER, str(out)], check=True, timeout=300)
    got = rows(out)
    assert [r["id"] for r in got] == [r["id"] for r in rows(ref)]  # 0 lost, 0 twice, in order
    assert got == rows(ref)
