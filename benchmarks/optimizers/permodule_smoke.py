"""Per-module optimization of a two-stage program on the embedded model (issue 13, item 4).

    .venv/bin/python benchmarks/optimizers/permodule_smoke.py [--budget 200] [--seed 0] \
        [--threads 1] [-o DIR]

Writes the bundled sentiment items (30, ``task == "sentiment"``) to ``DIR/sentiment.jsonl``
and runs the equivalent of::

    instructkit optimize program benchmarks/optimizers/two_stage_sentiment.py:program \
        --data DIR/sentiment.jsonl --target sentiment --labels positive,negative \
        --budget 200 --seed 0 --set val_fraction=0.3 --set test_fraction=0.3 \
        --max-tokens 12 -o DIR

on SmolLM2-135M (no proposer: templates only), then prints result.json: the val score of
the initial and the best program, each stage's instruction and val gain alone, the test delta
with its CI and p, and the calls. ``--threads`` sets torch's CPU threads: on a shared 2-core
machine one thread ran a call in 1.5 s where two threads took 12 s (oversubscription).
"""

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import torch

from instructkit.lm.local import LocalLM
from instructkit.optimize.program import ProgramOptConfig, run_program_optimization

PROGRAM = Path(__file__).with_name("two_stage_sentiment.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", default="permodule_smoke")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    items = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text()
    rows = [json.loads(line) for line in items.splitlines() if line.strip()]
    rows = [{"text": r["text"], "sentiment": r["answer"]} for r in rows if r["task"] == "sentiment"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "sentiment.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ProgramOptConfig(
        program=f"{PROGRAM}:program",
        data=str(data),
        target="sentiment",
        labels=["positive", "negative"],
        budget=args.budget,
        seed=args.seed,
        val_fraction=0.3,
        test_fraction=0.3,
        max_tokens=12,
        out=str(out),
    )
    start = time.monotonic()
    result = run_program_optimization(cfg, lm=LocalLM.load("smollm2-135m-instruct"), progress=False)
    print(json.dumps(result.to_dict(), indent=1))
    print(f"elapsed {time.monotonic() - start:.0f} s (model load included)")


if __name__ == "__main__":
    main()
