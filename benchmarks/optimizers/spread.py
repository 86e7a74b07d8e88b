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


def scores(
    lm: Any, task: BenchTask, sets: Sequence[Sequence[str]], items: list[Any]
) -> list[float]:
    """Mean metric of the program under each instruction set on ``items``: each stage sends
    the prompts of every set and item in one batched ``complete`` (greedy)."""
    adapter, metric = PlainAdapter(), task.metric()
    values = [[dict(ex.inputs()) for ex in items] for _ in sets]
    parsed: list[list[Any]] = []
    for k, stage in enumerate(task.stages):
        sigs = [stage.signature(instructions[k]) for instructions in sets]
        tokens = 24 if len(task.stages) > 1 else 16
        requests = [
            ChatRequest.from_messages(adapter.format(sig, [], x), max_tokens=tokens)
            for sig, xs in zip(sigs, values, strict=True)
            for x in xs
        ]
        texts = iter(c.text for c in lm.complete(requests))
        parsed = [[read(adapter, sig, next(texts)) for _ in items] for sig in sigs]
        values = [[{stage.output: (p or {}).get(stage.output, "")} for p in ps] for ps in parsed]
    return [
        sum(metric(ex, dspy.Prediction(**p)) if p else 0.0 for ex, p in zip(items, ps, strict=True))
        / len(items)
        for ps in parsed
    ]


def read(adapter: Any, signature: Any, text: str) -> dict[str, Any] | None:
    """The parsed reply, or None when PlainAdapter cannot read it (the item scores 0)."""
    try:
        return dict(adapter.parse(signature, text))
    except Exception:
        return None


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
        sets = instruction_sets(task, split.train, 0)
        values = scores(lm, task, sets, items)
        print(
            f"\n## {name}: spread {max(values) - min(values):.3f} ({time.time() - started:.0f} s)"
        )
        for value, instructions in zip(values, sets, strict=True):
            print(f"  {value:.3f}  {' || '.join(instructions)}")
    print(f"\ntotal {time.time() - total:.0f} s")


if __name__ == "__main__":
    main()
