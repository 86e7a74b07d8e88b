"""The optimize-program workflow killed with SIGKILL mid-search and re-run: no item scored
twice, no call spent twice, and the same result as a run that was never killed."""

import json
import random
import subprocess
import sys
import textwrap

from killing import complete_rows, kill_when

PROGRAM = textwrap.dedent(
    """
    import dspy

    class Pipeline(dspy.Module):
        def __init__(self):
            super().__init__()
            self.extract = dspy.Predict("text -> phrase")
            self.classify = dspy.Predict("phrase -> sentiment")

        def forward(self, text):
            return self.classify(phrase=self.extract(text=text).phrase)
    """
)

DRIVER = textwrap.dedent(
    """
    import sys, time
    from instructkit.lm.scripted import ScriptedLM
    from instructkit.optimize.program import ProgramOptConfig, run_program_optimization

    def answer(request):
        time.sleep(0.005)  # slow enough to be killed mid-search
        instruction, _, item = request.messages[-1][1].partition("\\n\\n")
        if item.startswith("Text:"):
            word = "bad" if "bad" in item else "good"
            return word if "step by step" in instruction or len(item) % 3 else "it"
        return "negative" if "bad" in item else "positive"

    cfg = ProgramOptConfig(program=sys.argv[1], data=sys.argv[2], target="sentiment",
                           labels=["positive", "negative"], budget=150, out=sys.argv[3])
    run_program_optimization(cfg, lm=ScriptedLM(answer), progress=False)
    """
)


def _setup(folder):
    folder.mkdir()
    (folder / "pipeline.py").write_text(PROGRAM)
    rows = [
        {"text": f"review {i} {'x' * (i % 4)} was {'good' if i % 2 else 'bad'}",
         "sentiment": ["negative", "positive"][i % 2]}
        for i in range(30)
    ]  # fmt: skip
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    program = f"{folder / 'pipeline.py'}:Pipeline"
    return [sys.executable, "-c", DRIVER, program, str(data), str(folder / "out")]


def _result(folder):
    result = json.loads((folder / "out" / "result.json").read_text())
    result.pop("wall_s")
    return result


def test_optimize_program_killed_and_resumed(tmp_path):
    whole = _setup(tmp_path / "whole")
    subprocess.run(whole, check=True, capture_output=True, timeout=300)
    expected = complete_rows(tmp_path / "whole" / "out" / "history.jsonl")

    killed = _setup(tmp_path / "killed")
    journal = tmp_path / "killed" / "out" / "history.jsonl"
    stop_at = random.Random().randint(3, len(expected) - 5)
    kill_when(killed, lambda: len(complete_rows(journal)) >= stop_at, timeout=180)
    done_before = len(complete_rows(journal))
    assert 0 < done_before < len(expected), "killed too late or too early to test resume"
    subprocess.run(killed, check=True, capture_output=True, timeout=300)

    rows = complete_rows(journal)
    keys = [(r["phase"], json.dumps(r["instructions"]), r["item"]) for r in rows]
    assert len(keys) == len(set(keys)), "an item was scored twice"
    assert sorted(keys) == sorted(
        (r["phase"], json.dumps(r["instructions"]), r["item"]) for r in expected
    )
    assert _result(tmp_path / "killed") == _result(tmp_path / "whole")
