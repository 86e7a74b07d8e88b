"""Scoring one instruction on the embedded model: one item at a time vs items on threads whose
calls the bridge gathers into batches.

    .venv/bin/python benchmarks/optimizers/scoring_threads.py [--threads 16] [--max-tokens 6]

Scores one instruction on the bundled sentiment items (all 30) with SmolLM2-135M twice, with the
same model and ``max_tokens``: ``threads=1`` on a bridge with ``max_batch=1`` (each call alone,
the behaviour before batching), then ``threads=N`` on a bridge with ``max_batch=N``. A warm-up
call comes first, so neither run pays the first-call cost. Prints the wall time of each, the
batch sizes the engine sent, both scores, and how many answers differ (greedy decoding of a
left-padded batch can differ slightly from decoding one sequence alone).
"""

import argparse
import json
import time
from importlib import resources

from instructkit.lm.base import ChatRequest
from instructkit.lm.local import LocalLM
from instructkit.optimize import CallCounter, InstructionTask, bridge_lm, score_instruction

INSTRUCTION = "Classify the sentiment of the text as positive or negative."


def _rows() -> list[dict[str, str]]:
    items = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text()
    rows = [json.loads(line) for line in items.splitlines() if line.strip()]
    return [{"text": r["text"], "label": r["answer"]} for r in rows if r["task"] == "sentiment"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=6)
    args = ap.parse_args()
    rows = _rows()
    task = InstructionTask(inputs=("text",), target="label", labels=("positive", "negative"))
    model = LocalLM.load("smollm2-135m-instruct")
    model.complete([ChatRequest((("user", "Hello"),), max_tokens=4)] * 2)  # warm-up
    runs = {}
    for threads in (1, args.threads):
        lm = bridge_lm(model, counter=CallCounter(), max_tokens=args.max_tokens, max_batch=threads)
        started = time.perf_counter()
        scored = score_instruction(task, INSTRUCTION, rows, lm=lm, threads=threads)
        wall = time.perf_counter() - started
        runs[threads] = scored
        print(
            f"threads={threads:2d} max_batch={threads:2d}: {wall:6.1f} s, {scored.calls} calls, "
            f"score {scored.score:.3f}, batches {sorted(lm.engine.batch_sizes.items())}"
        )
    one, many = runs[1], runs[args.threads]
    differ = [
        i
        for i, (a, b) in enumerate(zip(one.items, many.items, strict=True))
        if a.outputs != b.outputs
    ]
    print(f"{len(rows)} items; answers that differ: {len(differ)} {differ}")
    for i in differ:
        print(f"  item {i}: {one.items[i].outputs} vs {many.items[i].outputs}")


if __name__ == "__main__":
    main()
