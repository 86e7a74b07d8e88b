"""Markdown tables of optimizer-benchmark results (rows written by ``run.py``).

    python benchmarks/optimizers/table.py results.jsonl

Per track and tier: one row per task x budget x method with the mean held-out test score over
seeds and its 95% confidence interval (Student t over seeds), the mean change against the
initial instruction on the same test items, the mean val score, the mean task and proposer
calls, and how many runs the budget stopped or that ended in an error (an error row keeps the
starting program). Then the mean over tasks per budget x method, over the tasks every method
of that budget ran (skipped runs, e.g. one-predictor methods on the two-stage task, are listed).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Two-sided 95% Student t critical values by degrees of freedom (1.96 past the table).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = next((T95[k] for k in sorted(T95) if k >= n - 1), 1.96)
    return mean, t * sd / math.sqrt(n)


def load(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def fmt(mean: float, half: float) -> str:
    return f"{mean:.3f} ± {half:.3f}"


def render(rows: Iterable[dict[str, Any]]) -> str:
    """The markdown tables of ``rows``."""
    rows = list(rows)
    out = []
    for track, tier in sorted({(r["track"], r["tier"]) for r in rows}):
        part = [r for r in rows if (r["track"], r["tier"]) == (track, tier)]
        out.append(f"### Track `{track}`, tier `{tier}`\n")
        out.append(per_task(part))
        out.append(over_tasks(part))
    return "\n".join(out)


def per_task(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["task"], r["budget"], r["method"]].append(r)
    lines = [
        "| task | budget | method | seeds | test (95% CI) | Δ test vs initial | val | "
        "task calls | proposer calls | stopped by budget | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, budget, method), group in sorted(groups.items()):
        done = [r for r in group if r["status"] != "skipped"]
        if not done:
            lines.append(f"| {task} | {budget} | {method} | 0 | skipped: {group[0]['note']} |"
                         " | | | | | |")  # fmt: skip
            continue
        calls = [r["calls"] for r in done]
        lines.append(
            f"| {task} | {budget} | {method} | {len(done)} "
            f"| {fmt(*mean_ci([r['test'] for r in done]))} "
            f"| {fmt(*mean_ci([r['delta'] for r in done]))} "
            f"| {sum(r['val'] for r in done) / len(done):.3f} "
            f"| {sum(c.get('task', 0) for c in calls) / len(calls):.0f} "
            f"| {sum(c.get('proposer', 0) for c in calls) / len(calls):.0f} "
            f"| {sum(r['stopped'] == 'budget' for r in done)} "
            f"| {sum(r['status'] == 'error' for r in done)} |"
        )
    return "\n".join(lines) + "\n"


def over_tasks(rows: list[dict[str, Any]]) -> str:
    """Mean over the tasks that every method of a budget ran, of each method's mean per task."""
    ran = [r for r in rows if r["status"] != "skipped"]
    lines = [
        "| budget | method | tasks | mean test | mean Δ test vs initial |",
        "|---|---|---|---|---|",
    ]
    for budget in sorted({r["budget"] for r in ran}):
        at = [r for r in ran if r["budget"] == budget]
        methods = sorted({r["method"] for r in at})
        common = set.intersection(*({r["task"] for r in at if r["method"] == m} for m in methods))
        if not common:
            lines.append(f"| {budget} | (no task that every method ran) | | | |")
            continue
        for method in methods:
            per: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in at:
                if r["method"] == method and r["task"] in common:
                    per[r["task"]].append(r)
            test = [sum(r["test"] for r in g) / len(g) for g in per.values()]
            delta = [sum(r["delta"] for r in g) / len(g) for g in per.values()]
            lines.append(
                f"| {budget} | {method} | {', '.join(sorted(per))} "
                f"| {sum(test) / len(test):.3f} | {sum(delta) / len(delta):+.3f} |"
            )
    skipped = sorted({f"{r['method']} on {r['task']}" for r in rows if r["status"] == "skipped"})
    note = f"\nNot run (one-predictor methods, two-stage task): {', '.join(skipped)}.\n"
    return "\n".join(lines) + "\n" + (note if skipped else "")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: table.py results.jsonl")
    print(render(load(args[0])))


if __name__ == "__main__":
    main()
