"""The optimizer benchmark's CI tier: every method on one task in the fake tier, under budget.

Runs ``benchmarks/optimizers/run.py`` in-process (fake task engine, bank proposer) for our
methods and DSPy's COPRO, MIPROv2 and GEPA, then renders the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "optimizers"
sys.path.insert(0, str(BENCH))

import methods  # noqa: E402
import run  # noqa: E402
import table  # noqa: E402
from engines import BankProposer, FakeTaskModel, instruction_quality  # noqa: E402
from tasks import TASKS  # noqa: E402

from instructkit.lm.base import ChatRequest  # noqa: E402

KEYS = {
    "task", "method", "budget", "seed", "track", "tier", "status", "calls", "val", "initial_val",
    "test", "initial_test", "delta", "wall_s", "stopped", "settings", "instructions",
}  # fmt: skip


def bench(tmp_path: Path, *flags: str) -> dict:
    return run.run_benchmark(run.parse_args([*flags, "--out", str(tmp_path / "r.jsonl")]))


def test_every_method_stays_within_the_budget_and_the_table_renders(tmp_path: Path) -> None:
    budget = 150
    for method in sorted(methods.METHODS):
        row = bench(tmp_path, "--task", "topic", "--method", method, "--budget", str(budget))
        assert KEYS <= set(row), method
        assert row["status"] == "ok", (method, row["settings"])
        assert 0 < row["calls"]["task"] <= budget, (method, row["calls"])
        assert row["calls"]["test"] == 2 * len(TASKS["topic"].split(0).test)
        assert row["delta"] == pytest.approx(row["test"] - row["initial_test"])
    rows = table.load(tmp_path / "r.jsonl")
    assert len(rows) == len(methods.METHODS)
    text = table.render(rows)
    for method in methods.METHODS:
        assert f"| topic | {budget} | {method} | 1 |" in text
        assert f"| {budget} | {method} | topic |" in text


def test_peers_used_the_bank_and_some_method_beat_the_initial_instruction(tmp_path: Path) -> None:
    rows = [
        bench(tmp_path, "--task", "sentiment", "--method", m, "--budget", "300", "--seed", "1")
        for m in ("copro", "gepa", "mipro")
    ]
    bank = run.build_bank(TASKS["sentiment"], TASKS["sentiment"].split(1).train, 1)[0]
    for row in rows:
        assert row["calls"]["proposer"] > 0, row["method"]
        assert row["instructions"][0] in [*bank, TASKS["sentiment"].initial[0]], row["method"]
    assert max(r["val"] for r in rows) > rows[0]["initial_val"]


def test_a_budget_too_small_stops_the_peer_and_is_recorded(tmp_path: Path) -> None:
    row = bench(tmp_path, "--task", "sentiment", "--method", "mipro", "--budget", "40")
    assert row["status"] == "ok"
    assert row["stopped"] == "budget"
    assert row["calls"]["task"] <= 40


def test_the_two_stage_task_runs_peers_and_skips_one_predictor_methods(tmp_path: Path) -> None:
    skipped = bench(tmp_path, "--task", "triage", "--method", "templates", "--budget", "300")
    assert skipped["status"] == "skipped"
    row = bench(tmp_path, "--task", "triage", "--method", "gepa", "--budget", "300")
    assert row["status"] == "ok" and row["calls"]["task"] <= 300
    assert len(row["instructions"]) == 2
    assert "Not run (one-predictor methods" in table.render(table.load(tmp_path / "r.jsonl"))


def test_e2e_track_records_a_peer_whose_proposer_replies_do_not_parse(tmp_path: Path) -> None:
    row = bench(
        tmp_path, "--task", "city", "--method", "copro", "--budget", "120", "--track", "e2e"
    )
    assert row["status"] == "error"
    assert "AdapterParseError" in row["settings"]["error"]
    assert row["test"] == row["initial_test"]  # the starting program is what it leaves


def test_the_fake_engine_rewards_better_instructions() -> None:
    task = TASKS["topic"]
    plain = instruction_quality("What is this about?", task, 0)
    labels = instruction_quality(
        "Classify `message`: answer only with billing, technical, shipping or account.", task, 0
    )
    assert labels > plain + 0.3
    model = FakeTaskModel(task)
    row = task.rows()[0]
    prompt = f"Say anything.\n\nMessage: {row['message']}"
    assert model.answer(ChatRequest((("user", prompt),))) in task.labels


def test_the_bank_proposer_answers_in_the_callers_format() -> None:
    bank = BankProposer(TASKS["topic"], [["first", "second", "third"]])
    chat = "Your output fields are:\n1. `proposed_instruction` (str)\n[[ ## completed ## ]]"
    assert bank.answer(ChatRequest((("system", chat), ("user", "x")))).startswith(
        "[[ ## proposed_instruction ## ]]\nfirst"
    )
    json_system = "Your output fields are:\n1. `new_instruction`\nOutputs will be a JSON object"
    assert bank.answer(ChatRequest((("system", json_system), ("user", "x")))) == (
        '{"new_instruction": "second"}'
    )
    assert bank.answer(ChatRequest((("user", "Rewrite this."),))) == "third"
    assert bank.answer(ChatRequest((("user", "Rewrite this."),))) == "first"  # cycles
