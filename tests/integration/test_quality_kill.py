"""`instructkit data filter --judge` killed with SIGKILL mid-scoring and re-run: no rating
lost, none asked for twice, and the same output as a run that was never killed."""

import json
import re
import subprocess
import sys

from killing import complete_rows, kill_when

WORDS = "apples rivers engines poems cities planets songs bridges trains clouds".split()


def filter_cmd(src, out):
    return [
        sys.executable,
        "-m",
        "instructkit",
        "data",
        "filter",
        str(src),
        "-o",
        str(out),
        "--report",
        str(out.with_suffix(".report.json")),
        "--judge",
        "local:tiny-random-llama",
        "--set",
        "judge_batch_size=1",
        "--set",
        "judge_max_tokens=8",
        "--no-progress",
    ]


def sent_and_resumed(stdout):
    [(sent, resumed)] = re.findall(r"(\d+) requests sent, (\d+) ratings resumed", stdout)
    return int(sent), int(resumed)


def test_judge_scoring_killed_and_resumed(tmp_path):
    rows = [
        {
            "instruction": f"Describe {w} for a child, please.",
            "output": f"{w.capitalize()} are interesting things number {i}.",
        }
        for i, w in enumerate(WORDS * 3)
    ]
    unique = len(rows)  # 30 records the heuristics keep, all different
    rows += rows[:4]  # identical records are rated once
    rows.append({"instruction": "Tell me a joke about cats.", "output": "As an AI, I cannot."})
    src = tmp_path / "train.json"
    src.write_text(json.dumps(rows))
    (tmp_path / "killed").mkdir()
    (tmp_path / "whole").mkdir()
    out, whole = tmp_path / "killed" / "clean.json", tmp_path / "whole" / "clean.json"
    journal = out.with_name("clean.judge.jsonl")

    # the reference run, never killed, runs beside the one that will be
    reference = subprocess.Popen(filter_cmd(src, whole), stdout=subprocess.PIPE, text=True)
    kill_when(filter_cmd(src, out), lambda: len(complete_rows(journal)) >= 3, timeout=240)
    done_before = len(complete_rows(journal))
    assert 0 < done_before < unique, "killed too late or too early to test resume"
    assert not out.exists(), "the output is written only when scoring is complete"

    rerun = subprocess.run(
        filter_cmd(src, out), check=True, capture_output=True, text=True, timeout=300
    )
    ref_stdout, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0

    keys = [r["key"] for r in complete_rows(journal)]
    assert len(keys) == unique == len(set(keys)), "a rating was lost or journaled twice"
    assert sent_and_resumed(rerun.stdout) == (unique - done_before, done_before)
    assert sent_and_resumed(ref_stdout) == (unique, 0)
    assert "judge_unparsed (kept)" in rerun.stdout  # tiny-random-llama's text is no score
    for name in ("clean.json", "clean.rejects.jsonl", "clean.report.json"):
        assert (out.parent / name).read_bytes() == (whole.parent / name).read_bytes(), name
    assert len(json.loads(out.read_text())) == len(rows) - 1  # only the refusal dropped
