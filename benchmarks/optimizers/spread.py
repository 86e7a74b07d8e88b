"""Does the embedded model respond to instruction changes on each benchmark task? (the spread)

    python benchmarks/optimizers/spread.py [--items 30] [--seed 0]

For each task, six instructions (the initial one, four component-template candidates of the
bank, and "Repeat the input." as a floor) are scored on the first ``--items`` val items of the
seed's split with SmolLM2-135M, through PlainAdapter prompts sent in batches (the same prompts
the benchmark sends one by one). For the two-stage ``triage`` program each instruction is a pair
(stage 1, stage 2). Prints each score, the spread (max - min) and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy

sys.path.insert(0, str(Path(__file__).parent))

from run import build_bank  # noqa: E402
from tasks import TASKS, BenchTask  # noqa: E402

from instructkit.lm.base import ChatRequest  # noqa: E402
from instructkit.optimize import PlainAdapter  # noqa: E402

FLOOR = "Repeat the input."


def answers(lm: Any, signature: Any, inputs: Sequence[dict[str, Any]], tokens: int) -> list[Any]:
    """One reply per input, parsed by PlainAdapter (None when it does not parse)."""
    adapter = PlainAdapter()
    requests = [
        ChatRequest.from_messages(adapter.format(signature, [], x), max_tokens=tokens)
        for x in inputs
    ]
    out = []
    for completion in lm.complete(requests):
        try:
            out.append(adapter.parse(signature, completion.text))
        except Exception:
            out.append(None)
    return out


def score(lm: Any, task: BenchTask, instructions: Sequence[str], items: list[Any]) -> float:
    """Mean metric of the program with ``instructions`` on ``items`` (batched, greedy)."""
    metric = task.metric()
    values: list[dict[str, Any]] = [dict(ex.inputs()) for ex in items]
    parsed: list[Any] = []
    for stage, instruction in zip(task.stages, instructions, strict=True):
        sig = stage.signature(instruction)
        parsed = answers(lm, sig, values, 24 if len(task.stages) > 1 else 16)
        values = [{stage.output: (p or {}).get(stage.output, "")} for p in parsed]
    preds = [dspy.Prediction(**p) if p else None for p in parsed]
    return sum(metric(ex, p) if p else 0.0 for ex, p in zip(items, preds, strict=True)) / len(items)


def instruction_sets(task: BenchTask, train: list[Any], seed: int) -> list[tuple[str, ...]]:
    bank = build_bank(task, train, seed)
    picks = [tuple(stage_bank[i] for stage_bank in bank) for i in range(4)]
    return [task.initial, *picks, tuple(FLOOR for _ in task.stages)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="*", default=sorted(TASKS))
    args = ap.parse_args()
    from instructkit.lm.local import LocalLM

    lm = LocalLM.load("smollm2-135m-instruct")
    total = time.time()
    for name in args.tasks:
        task, started = TASKS[name], time.time()
        split = task.split(args.seed)
        items = split.val[: args.items]
        scores = [(score(lm, task, s, items), s) for s in instruction_sets(task, split.train, 0)]
        values = [v for v, _ in scores]
        print(f"\n## {name}: spread {max(values) - min(values):.3f} ({time.time() - started:.0f} s)")
        for value, instructions in scores:
            print(f"  {value:.3f}  {' || '.join(instructions)}")
    print(f"\ntotal {time.time() - total:.0f} s")


if __name__ == "__main__":
    main()
