"""One run of the optimizer benchmark: a method on a task at a budget and seed; appends a row.

    python benchmarks/optimizers/run.py --task sentiment --method gepa --budget 300 --seed 0 \
        --tier smollm2 --track bank --out results.jsonl

What a run does, top to bottom (:func:`run_benchmark`):

1. Splits the task's data with the seed (``tasks.py``: train 20, val 30, test the rest) and
   builds the bank: ``generate_candidates(spec, 12, seed)`` per predictor of the program.
2. Builds the models on one :class:`~engines.BackstopCounter` with a budget of ``--budget``
   task calls: the task model (tier ``fake``: :class:`~engines.FakeTaskModel`; tier
   ``smollm2``: the embedded SmolLM2-135M, through ``CachedLM`` when ``--cache`` is given)
   bridged with role ``task``, and the proposer with role ``proposer``: track ``bank``, the
   :class:`~engines.BankProposer`; track ``e2e``, the task model itself (offline, SmolLM2 is
   the only model there is).
3. Runs the method (``methods.METHODS``) under ``dspy.context(lm=task, adapter=RoutingAdapter)``.
   A run stopped by the budget is recorded (``stopped: budget``), never a crash: a method that
   raises ``BudgetExceeded`` is recorded with its starting program.
4. Scores the initial and the final program on val and test outside the budget (roles ``val``
   and ``test``) and appends one JSON row to ``--out``.

Row keys: task, method, budget, seed, track, tier, calls {task, proposer, val, test}, val,
initial_val, test, initial_test, delta (test - initial_test), wall_s, stopped, settings,
instructions (the best program's, one per predictor), status (ok | skipped | error), note.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dspy

sys.path.insert(0, str(Path(__file__).parent))

from engines import BackstopCounter, BankProposer, FakeTaskModel  # noqa: E402
from methods import BANK_SIZE, METHODS, Context, Outcome  # noqa: E402
from tasks import TASKS, BenchTask  # noqa: E402

from instructkit.io import append_jsonl  # noqa: E402
from instructkit.optimize import PlainAdapter, bridge_lm  # noqa: E402
from instructkit.optimize.bridge import instructkit_cause  # noqa: E402
from instructkit.optimize.peers import RoutingAdapter  # noqa: E402
from instructkit.optimize.scoring import score_program  # noqa: E402
from instructkit.optimize.templates import generate_candidates  # noqa: E402

TIERS = ("fake", "smollm2")
TRACKS = ("bank", "e2e")
PHASES = ("task", "val", "test")  # counter roles: the search, then scoring outside the budget


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--budget", type=int, required=True, help="task-model calls (engine count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tier", choices=TIERS, default="fake")
    ap.add_argument("--track", choices=TRACKS, default="bank")
    ap.add_argument("--cache", help="SQLite request cache of the task model (tier smollm2)")
    ap.add_argument("--out", required=True, help="results JSONL (one row appended per run)")
    return ap.parse_args(argv)


def base_model(task: BenchTask, tier: str, cache: str | None) -> Any:
    """The instructkit LM of the task model."""
    if tier == "fake":
        return FakeTaskModel(task).lm
    from instructkit.lm.cache import CachedLM
    from instructkit.lm.local import LocalLM

    model = LocalLM.load("smollm2-135m-instruct")
    return CachedLM(model, cache) if cache else model


def build_bank(task: BenchTask, train: list[Any], seed: int) -> list[list[str]]:
    return [
        [c.text for c in generate_candidates(task.spec(i, train), BANK_SIZE, seed=seed)]
        for i in range(len(task.stages))
    ]


def run_benchmark(args: argparse.Namespace, model: Any = None) -> dict[str, Any]:
    """One run; returns the row (also appended to ``args.out``). ``model`` replaces the tier's
    task model (an instructkit LM)."""
    task, method = TASKS[args.task], METHODS[args.method]
    row: dict[str, Any] = {
        "task": task.name, "method": args.method, "budget": args.budget, "seed": args.seed,
        "track": args.track, "tier": args.tier, "ours": method.ours,
    }  # fmt: skip
    if len(task.stages) > 1 and not method.multi_predictor:
        row |= {"status": "skipped", "note": "tunes one predictor; the task has several"}
        append_jsonl([row], args.out)
        return row
    split = task.split(args.seed)
    bank = build_bank(task, split.train, args.seed)
    model = model if model is not None else base_model(task, args.tier, args.cache)
    counter = BackstopCounter(budgets={"task": args.budget})
    tokens = 24 if len(task.stages) > 1 else 16
    lms = {r: bridge_lm(model, counter=counter, role=r, max_tokens=tokens) for r in PHASES}
    proposer = BankProposer(task, bank).lm if args.track == "bank" else model
    proposer_lm = bridge_lm(proposer, counter=counter, role="proposer", max_tokens=256)
    # Proposer prompts: ChatAdapter on the bank track (DSPy's default: the bank reads the output
    # fields by name); PlainAdapter on e2e (the only format SmolLM2 can follow).
    proposer_adapter = (
        dspy.ChatAdapter(use_json_adapter_fallback=False)
        if args.track == "bank"
        else PlainAdapter()
    )
    metric = task.metric()
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        ctx = Context(
            task, split, args.budget, args.seed, counter, lms["task"], proposer_lm, metric, bank,
            Path(work), proposer_adapter,
        )  # fmt: skip
        # max_errors: a call refused by the budget fails one item; the peers go on.
        with dspy.context(
            lm=lms["task"], adapter=RoutingAdapter(proposer_adapter), max_errors=10**9
        ):
            outcome = run_method(method.run, ctx)
    wall = time.time() - started
    scores = {
        (name, phase): score_program(prog, getattr(split, phase), metric, lm=lms[phase]).score
        for name, prog in (("initial", task.program()), ("best", outcome.program))
        for phase in ("val", "test")
    }
    row |= {
        "status": "error" if outcome.stopped == "error" else "ok",
        "calls": {role: counter.count(role) for role in ("task", "proposer", "val", "test")},
        "val": scores["best", "val"],
        "initial_val": scores["initial", "val"],
        "test": scores["best", "test"],
        "initial_test": scores["initial", "test"],
        "delta": scores["best", "test"] - scores["initial", "test"],
        "wall_s": round(wall, 2),
        "stopped": outcome.stopped,
        "settings": outcome.settings,
        "instructions": [p.signature.instructions for p in outcome.program.predictors()],
    }
    append_jsonl([row], args.out)
    return row


def run_method(run: Any, ctx: Context) -> Outcome:
    """The method's outcome. A method that fails keeps its starting program, recorded as
    ``stopped: budget`` (the budget's error: no call is ever made past the budget, the counter
    refuses it first) or ``stopped: error`` with the error (e.g. COPRO on replies its adapter
    cannot parse, on the e2e track)."""
    quiet = open(os.devnull, "w")  # COPRO prints its proposer's history; GEPA a progress bar
    try:
        with quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return run(ctx)
    except Exception as exc:
        cause = instructkit_cause(exc) or exc
        stopped = "budget" if type(cause).__name__ == "BudgetExceeded" else "error"
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        return Outcome(ctx.task.program(), stopped, {"error": error})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.disable(logging.WARNING)  # the peers log every candidate; the row says what matters
    row = run_benchmark(args)
    if row["status"] != "skipped":
        print(
            f"{row['task']} {row['method']} budget {row['budget']} seed {row['seed']}: "
            f"calls {row['calls']}, val {row['val']:.3f}, test {row['initial_test']:.3f} -> "
            f"{row['test']:.3f} ({row['stopped']}, {row['wall_s']} s)"
        )
    else:
        print(f"{row['task']} {row['method']}: {row['status']} ({row['note']})")


if __name__ == "__main__":
    main()
