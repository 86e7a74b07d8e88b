"""The optimize-prompt workflow killed with SIGKILL mid-search and re-run, for each search method:
no history row or proposer reply lost or written twice, and the same result as a run that was
never killed."""

import json
import random
import subprocess
import sys
import textwrap

import pytest
from killing import complete_rows, kill_when

DRIVER = textwrap.dedent(
    """
    import sys, time
    from instructkit.lm.scripted import ScriptedLM
    from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization

    def answer(request):
        time.sleep(0.01)  # slow enough to be killed mid-search
        instruction, _, rest = request.messages[-1][1].partition("\\n\\n")
        right = "positive" if "good" in rest else "negative"
        if "Choose" in instruction or "Label" in instruction:
            return right
        return right if len(rest) % 3 else "negative" if right == "positive" else "positive"

    def propose(request):
        time.sleep(0.01)
        return f"Label the text as positive or negative ({request.seed % 1000})."

    cfg = PromptOptConfig(data=sys.argv[1], inputs=["text"], target="label",
                          labels=["positive", "negative"], budget=60, out=sys.argv[2],
                          method=sys.argv[3])
    proposer = ScriptedLM(propose) if sys.argv[3] == "opro" else None
    run_prompt_optimization(cfg, lm=ScriptedLM(answer), proposer_lm=proposer)
    """
)


def _setup(folder, method):
    folder.mkdir()
    rows = [
        {
            "text": f"review {i} {'x' * (i % 5)} was {'good' if i % 2 else 'bad'}",
            "label": ["negative", "positive"][i % 2],
        }
        for i in range(40)
    ]
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [sys.executable, "-c", DRIVER, str(data), str(folder / "out"), method]


def _result(folder):
    result = json.loads((folder / "out" / "result.json").read_text())
    result.pop("wall_s")
    return result


@pytest.mark.parametrize("method", ["templates", "evolutionary", "opro"])
def test_optimize_prompt_killed_and_resumed(tmp_path, method):
    whole = _setup(tmp_path / "whole", method)
    subprocess.run(whole, check=True, capture_output=True, timeout=300)
    expected = complete_rows(tmp_path / "whole" / "out" / "history.jsonl")

    killed = _setup(tmp_path / "killed", method)
    journal = tmp_path / "killed" / "out" / "history.jsonl"
    # Rows are journaled a chunk (<= 16 items scored at once) at a time: stopping at most 17
    # rows before the end leaves a chunk boundary to kill at before the run completes.
    stop_at = random.Random().randint(3, len(expected) - 17)
    kill_when(killed, lambda: len(complete_rows(journal)) >= stop_at, timeout=180)
    done_before = len(complete_rows(journal))
    assert 0 < done_before < len(expected), "killed too late or too early to test resume"
    subprocess.run(killed, check=True, capture_output=True, timeout=300)

    rows = complete_rows(journal)
    keys = [(r["phase"], r["instruction"], r["item"]) for r in rows]
    assert len(keys) == len(set(keys)), "an evaluation was written twice"
    assert rows == expected, "a row was lost or differs"
    assert sum(r["calls"] for r in rows if r["phase"] == "val") <= 60
    assert _result(tmp_path / "killed") == _result(tmp_path / "whole")
    replies = complete_rows(tmp_path / "killed" / "out" / "proposals.jsonl")
    assert replies == complete_rows(tmp_path / "whole" / "out" / "proposals.jsonl")
    assert [r["number"] for r in replies] == list(range(len(replies)))  # none lost or twice
    assert (len(replies) > 0) == (method == "opro")
