"""`instructkit synth evol` killed with SIGKILL mid-job and re-run: nothing lost, nothing twice."""

import json
import subprocess
import sys

from killing import complete_rows, kill_when

WORDS = ["apples", "rivers", "engines", "poems", "cities", "planets", "songs", "bridges"]


def test_evol_job_killed_and_resumed(tmp_path):
    src = tmp_path / "seeds.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "instruction": f"Describe {w} in detail."}) + "\n"
            for i, w in enumerate(WORDS * 3)
        )
    )
    out, rejects = tmp_path / "evol.jsonl", tmp_path / "evol.rejects.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "instructkit",
        "synth",
        "evol",
        str(src),
        "-o",
        str(out),
        "--lm",
        "local:tiny-random-llama",
        "--rounds",
        "3",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--set",
        "chunk_size=2",
        "--set",
        "min_response_words=1",
        "--no-progress",
    ]
    kill_when(cmd, lambda: len(complete_rows(out)) + len(complete_rows(rejects)) >= 4, timeout=120)
    done_before = len(complete_rows(out)) + len(complete_rows(rejects))
    assert 0 < done_before < 3 * len(WORDS) * 3, "killed too late or too early to test resume"
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    rows = complete_rows(out) + complete_rows(rejects)
    units = [(r["root_id"], r["round"]) for r in rows]
    assert len(units) == len(set(units)), "a unit of work was written twice"
    # every round processes every root whose lineage is still alive: each root once per round
    for rnd in (1, 2, 3):
        assert {root for root, r in units if r == rnd} == {f"s{i}" for i in range(24)}
