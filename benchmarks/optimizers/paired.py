"""Paired comparison of our methods against each peer across (task, seed) runs of one budget.

    python benchmarks/optimizers/paired.py benchmarks/optimizers/results_bank.jsonl

Each pair is the test accuracy of two methods on the same task, split and bank (same seed);
prints the mean difference, its 95% bootstrap CI and the paired permutation p
(``instructkit.evaluate.stats.compare_paired``). Only runs both methods finished are paired.
"""

from __future__ import annotations

import argparse
import json

from instructkit.evaluate.stats import compare_paired

OURS = ("evolutionary", "templates", "opro")
PEERS = ("gepa", "mipro", "copro")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", help="results JSONL of run.py")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.rows, encoding="utf-8") if line.strip()]
    test = {
        (r["task"], r["method"], r["budget"], r["seed"]): r["test"]
        for r in rows
        if r.get("status") == "ok"
    }
    print("| budget | ours | peer | runs | mean Δ test | 95% CI | p |")
    print("|---|---|---|---|---|---|---|")
    for budget in sorted({k[2] for k in test}):
        for ours in OURS:
            for peer in PEERS:
                runs = sorted(
                    (t, s)
                    for (t, m, b, s) in test
                    if b == budget and m == ours and (t, peer, b, s) in test
                )
                if len(runs) < 2:
                    continue
                a = [test[t, peer, budget, s] for t, s in runs]
                b = [test[t, ours, budget, s] for t, s in runs]
                c = compare_paired(a, b, seed=0)
                print(
                    f"| {budget} | {ours} | {peer} | {len(runs)} | {c.diff:+.3f} | "
                    f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}] | {c.p_permutation:.3f} |"
                )


if __name__ == "__main__":
    main()
