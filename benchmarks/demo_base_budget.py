"""Does the demo's 24-token answer budget cost the base model its lenient score?

    python benchmarks/demo_base_budget.py runs/demo_s0 runs/demo_s0_base96 [--max-new-tokens 96]

Re-evaluates the base model of a finished demo run (``instructkit demo --out RUN``) on the run's
own items (its ``suite.jsonl`` unchanged, so every prompt is phrased as in the run: the phrasing
is drawn per item from the item list) with a larger answer budget and the demo's ``eval run``
config otherwise, and compares on the unseen-cluster items, paired per item, the tuned model's
lenient scores (from the run) with the base's at 24 tokens (from the run) and at the larger
budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instructkit.config import load_config
from instructkit.data.task_suite import UNSEEN_CLUSTERS
from instructkit.demo import DemoConfig, _eval_config
from instructkit.evaluate.runner import SystemConfig, run_eval
from instructkit.evaluate.stats import compare_paired


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = (args.run / "suite.jsonl").read_text(encoding="utf-8").splitlines()
    unseen = {it["id"] for it in map(json.loads, lines) if it["cluster"] in UNSEEN_CLUSTERS}
    suite = args.run / "suite.jsonl"
    demo = load_config(DemoConfig, args.run / "config.yaml", out=str(args.out))
    demo = demo.model_copy(update={"eval": demo.eval.model_copy(
        update={"max_new_tokens": args.max_new_tokens})})  # fmt: skip
    system = SystemConfig(name="base_long", model=demo.model, template=demo.template)
    res = run_eval(_eval_config(demo, suite, [system], args.out / "base_long.json"), fresh=True)
    long = {x.id: x.metrics["lenient"]["base_long"] for x in res.per_item if x.id in unseen}
    run: dict[str, dict[str, float]] = {}
    for line in (args.run / "results.per_item.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["id"] in long:
            run.setdefault(row["id"], {})[row["system"]] = row["scores"]["lenient"]
    ids = sorted(long)
    base24, tuned = [run[i]["base"] for i in ids], [run[i]["tuned"] for i in ids]
    base_long = [long[i] for i in ids]
    n, mean = args.max_new_tokens, lambda xs: sum(xs) / len(xs)
    print(f"n={len(ids)} unseen items; lenient: base@24 {mean(base24):.3f}, "
          f"base@{n} {mean(base_long):.3f}, tuned@24 {mean(tuned):.3f}")  # fmt: skip
    for name, a in ((f"base@{n}", base_long), ("base@24", base24)):
        c = compare_paired(a, tuned)
        print(f"tuned@24 - {name}: {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], "
              f"p = {c.p_permutation:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
