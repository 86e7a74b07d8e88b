"""The demo over several seeds: per split and cluster, before -> after with paired CIs.

    for s in 0 1 2; do OMP_NUM_THREADS=1 instructkit demo --config recipes/demo.yaml \\
        --out runs/demo_s$s --set seed=$s; done
    python benchmarks/demo_seeds.py runs/demo_s0 runs/demo_s1 runs/demo_s2 > table.md

Reads each run's ``results.json`` (the one results schema) through
:func:`instructkit.evaluate.results.paired_summary` and prints one Markdown table per metric
(lenient, strict, format): a row per split (seen, unseen) and cluster, a column per run, the
mean delta over runs, and the expected lenient score of picking one of an item's listed options
at random (0 for open answers: numbers, words, lists), from the first run's ``suite.jsonl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from instructkit.data.task_suite import UNSEEN_CLUSTERS
from instructkit.evaluate.results import EvalResults, load_eval_results, paired_summary

METRICS = ("lenient", "strict", "format")


def _groups(results: list[EvalResults]) -> list[str]:
    clusters = {g for r in results for g in r.groups if g.startswith("cluster:")}
    held = lambda g: g.split(":", 1)[1] in UNSEEN_CLUSTERS  # noqa: E731
    return ["seen", "unseen", *sorted(clusters, key=lambda g: (held(g), g))]


def random_option_score(results: EvalResults, items: dict[str, Any], group: str) -> float:
    """Mean over the group's items of 1/len(options) (0 for an item without options)."""
    chosen = [
        x for x in results.per_item
        if x.id in items and (group == f"cluster:{x.cluster}"
                              or (group == "seen") == bool(x.seen) and group in ("seen", "unseen"))
    ]  # fmt: skip
    scores = [1 / len(o) if (o := items[x.id].get("options")) else 0.0 for x in chosen]
    return sum(scores) / max(1, len(scores))


def _cell(m: dict[str, Any]) -> str:
    p = "< 0.001" if m["p"] < 0.001 else f"{m['p']:.3f}"
    lo, hi = m["ci"]
    return f"{m['before']:.3f} → {m['after']:.3f}, {m['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}], p {p}"


def table(runs: list[Path], metric: str) -> str:
    results = [load_eval_results(r / "results.json") for r in runs]
    groups = _groups(results)
    summaries = [paired_summary(r, [g for g in groups if g in r.groups]) for r in results]
    lines = (runs[0] / "suite.jsonl").read_text(encoding="utf-8").splitlines()
    items = {it["id"]: it for it in map(json.loads, lines) if it["split"] == "test"}
    head = " | ".join(f"{r.name}: before → after, Δ [95% CI], p" for r in runs)
    out = [
        f"| group | n | {head} | mean Δ | random option |",
        "|---|---|" + "---|" * len(runs) + "---|---|",
    ]
    for g in groups:
        cells = [_cell(s[g][metric]) if g in s else "–" for s in summaries]
        deltas = [s[g][metric]["delta"] for s in summaries if g in s]
        n = summaries[0][g][metric]["n"] if g in summaries[0] else "–"
        chance = random_option_score(results[0], items, g)
        row = [g.removeprefix("cluster:"), str(n), *cells]
        out.append(f"| {' | '.join(row)} | {sum(deltas) / len(deltas):+.3f} | {chance:.3f} |")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    runs = [Path(a) for a in argv]
    if not runs:
        raise SystemExit(__doc__)
    for metric in METRICS:
        print(f"\n**{metric}**\n\n{table(runs, metric)}")


if __name__ == "__main__":
    main(sys.argv[1:])
