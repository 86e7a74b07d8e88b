"""Gradient-based instruction search on the embedded model: initial vs discrete vs soft prompt.

    .venv/bin/python benchmarks/optimizers/gradient_smollm2.py [--out /tmp/gradient-bench]

Runs ``instructkit optimize prompt --method gradient`` (:func:`run_prompt_optimization`) on the
bundled sentiment items (30): seeded split 14 train / 4 val / 12 test, SmolLM2-135M as the task
model, settings small enough for a few minutes of 2 CPU cores (``SETTINGS``). Prints the
held-out (test) accuracy of the initial instruction, of the discrete-search instruction and of
the initial instruction with the trained soft prompt, each paired against the initial
(``compare_paired``: delta, 95% bootstrap CI, permutation p), and the wall time.
"""

import argparse
import json
import time
from importlib import resources
from pathlib import Path

from instructkit.optimize.gradient import GradientSettings
from instructkit.optimize.prompt import PromptOptConfig, run_prompt_optimization

INSTRUCTION = "Classify the sentiment of the text. Answer with one of: positive, negative."
SETTINGS = GradientSettings(
    train_items=6, steps=3, top_k=16, candidates=4, fluency=0.1,
    soft_tokens=8, soft_steps=8, soft_lr=0.03, soft_batch=4,
)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/gradient-bench")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text()
    rows = [json.loads(line) for line in items.splitlines() if line.strip()]
    data = out / "sentiment.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": r["text"], "label": r["answer"]}) + "\n"
            for r in rows
            if r["task"] == "sentiment"
        )
    )
    cfg = PromptOptConfig(
        data=str(data), inputs=["text"], target="label", labels=["positive", "negative"],
        instruction=INSTRUCTION, method="gradient", budget=12, seed=args.seed,
        val_fraction=0.2, test_fraction=0.4, max_tokens=6, gradient=SETTINGS,
        out=str(out / "run"),
    )  # fmt: skip
    started = time.time()
    result = run_prompt_optimization(cfg, fresh=True, progress=False)
    grad = result.to_dict()["gradient"]
    print(f"sizes {result.sizes}; wall {time.time() - started:.0f} s; calls {result.calls}")
    print(f"initial  test {result.initial.test:.3f}  {result.initial.instruction!r}")
    for name in ("discrete", "soft_prompt"):
        g = grad[name]
        c = g["test_comparison"]
        print(
            f"{name:9} test {g['test']:.3f}  delta {c['delta']:+.3f} "
            f"CI [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] p {c['p']:.2f}"
        )
    print("discrete instruction:", repr(grad["discrete"]["found"]))
    print("discrete objective by step:", [round(x, 3) for x in grad["discrete"]["objective"]])
    print("soft prompt loss first/last step:", grad["soft_prompt"]["loss"])


if __name__ == "__main__":
    main()
