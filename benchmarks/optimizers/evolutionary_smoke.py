"""Smoke measurement of Evolutionary on the embedded model (not yet the peer benchmark of issue 13).

    .venv/bin/python benchmarks/optimizers/evolutionary_smoke.py [--budget 150] [--seed 0]

The bundled sentiment items (30) are shuffled with the seed and split 15 val / 15 test; the
search starts from a plain instruction plus 4 component-template candidates, has no proposer LM
(text operators only: the 135M model is useless as a proposer), and spends at most ``--budget``
task calls counted at the engine. Prints the calls, the val score of the baseline and the best,
and both on test.
"""

import argparse
import json
import random
import time
from importlib import resources

from instructkit.lm.local import LocalLM
from instructkit.optimize import (
    CallCounter,
    Evolutionary,
    InstructionTask,
    bridge_lm,
    score_instruction,
)
from instructkit.optimize.templates import TaskSpec, generate_candidates

START = "Classify the sentiment of the text as positive or negative."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    items = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text()
    rows = [json.loads(line) for line in items.splitlines() if line.strip()]
    rows = [{"text": r["text"], "label": r["answer"]} for r in rows if r["task"] == "sentiment"]
    random.Random(args.seed).shuffle(rows)
    val, test = rows[:15], rows[15:]
    labels = ("positive", "negative")
    task = InstructionTask(inputs=("text",), target="label", labels=labels)
    counter = CallCounter()
    lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=counter, max_tokens=6)
    spec = TaskSpec(
        description="classify the sentiment of a text",
        inputs=["text"],
        output="label",
        labels=list(labels),
        examples=val[:4],
    )
    initial = [c.text for c in generate_candidates(spec, 4, seed=args.seed)]
    started = time.time()
    opt = Evolutionary(
        lm, None, counter, args.budget, seed=args.seed, minibatch=8, population=6,
        generations=20, patience=4, initial=initial, labels=list(labels),
    )  # fmt: skip
    opt.compile(task.program(START), trainset=task.examples(val), metric=task.label_metric())
    r = opt.result
    print(f"search {time.time() - started:.1f} s; calls {r.calls}; stopped: {r.stopped}")
    print(f"val: baseline {r.baseline_score:.3f}, best {r.best_score:.3f}: {r.best_instruction!r}")
    a = score_instruction(task, START, test, lm=lm).score
    b = score_instruction(task, r.best_instruction, test, lm=lm).score
    print(f"test: initial {a:.3f}, best {b:.3f}")


if __name__ == "__main__":
    main()
