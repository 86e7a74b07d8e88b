"""Meta-learning evidence: does a FOMAML or Reptile initialization adapt faster to unseen task
clusters than multi-task SFT on the same training tasks and token budget?

For each training seed: ``train meta`` with FOMAML and with Reptile on the bundled suite's
training split (the held-out clusters nli, commonsense and counting are never seen); ``train
sft`` on the same items (``kind: tasks``, split train) for as many tokens as the FOMAML run put
through a gradient; then ``eval adapt`` from four initializations (sft first, so every other
is compared with it: base model with a fresh LoRA, FOMAML, Reptile) on the held-out tasks:
k = 0, 1, 2, 4 SGD steps on k support items (``eval adapt`` defaults to 0, 1, 2, 4, 8; k = 8
is left out for CPU time: the question is adaptation at k <= 4), greedy answers to a disjoint
query set scored lenient and strict, and the query loss; the support/query draw of each task
uses the training seed as its eval seed. The per-task values of all training seeds are pooled
into one results file (units = task x training seed; paired CIs per k against SFT) and its
HTML report; wall time and peak memory per meta-step come from each meta run's metrics.jsonl.
A finished meta or SFT run in ``--out`` (its summary.json) is reused by a rerun.

    PYTHONPATH=src python benchmarks/meta_adapt.py --out /tmp/meta_adapt           # embedded model
    # or one process per training seed, then pool:
    PYTHONPATH=src python benchmarks/meta_adapt.py --out /tmp/meta_adapt --seeds 1  # (0, 1, 2)
    PYTHONPATH=src python benchmarks/meta_adapt.py --out /tmp/meta_adapt --pool
    PYTHONPATH=src python benchmarks/meta_adapt.py --quick --out /tmp/meta_quick   # tiny, ~1 min

``--quick`` runs the tiny random model with a few steps and tasks, 1 seed: it proves the
pipeline runs end to end; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from instructkit.data.task_suite import UNSEEN_CLUSTERS, write_suite
from instructkit.evaluate.curves import build_curve
from instructkit.evaluate.results import EvalResults, load_eval_results, now, save_eval_results
from instructkit.report.curves import curve_plot
from instructkit.report.html import write_report
from instructkit.rl.adapt import METRICS, AdaptConfig, format_adapt_summary, run_adapt_eval
from instructkit.train.meta import MetaConfig, run_meta
from instructkit.train.sft import SFTConfig, run_sft
from instructkit.train.tracking import read_metrics

FULL = {
    "model": "smollm2-135m-instruct",
    "seeds": [0, 1, 2],
    "meta": {"meta_steps": 24, "tasks_per_batch": 3, "support_size": 4, "query_size": 4,
             "inner_steps": 2, "inner_lr": 1e-2, "max_seq_len": 256},
    "reptile_outer_lr": 0.5,
    "fomaml_outer_lr": 1e-3,
    "adapt": {"ks": [0, 1, 2, 4], "query_size": 8, "lr": 1e-2,
              "clusters": list(UNSEEN_CLUSTERS), "max_new_tokens": 16},
    "sft_lr": 2e-4,
}  # fmt: skip
QUICK = {
    "model": "tiny-random-llama",
    "seeds": [0],
    "meta": {"meta_steps": 2, "tasks_per_batch": 2, "support_size": 2, "query_size": 2,
             "inner_steps": 1, "inner_lr": 5e-2, "max_seq_len": 256, "lora": {"r": 4}},
    "reptile_outer_lr": 0.5,
    "fomaml_outer_lr": 1e-2,
    "adapt": {"ks": [0, 1, 2], "query_size": 2, "lr": 5e-2, "lora": {"r": 4},
              "task_names": ["count_words", "yes_no"], "max_new_tokens": 4},
    "sft_lr": 1e-3,
}  # fmt: skip


def meta_run(plan: dict[str, Any], algorithm: str, seed: int, out: Path) -> dict[str, Any]:
    """Train one meta-learner; returns its summary plus per-meta-step cost figures."""
    lr = plan[f"{algorithm}_outer_lr"]
    cfg = MetaConfig.model_validate(
        {**plan["meta"], "model": plan["model"], "algorithm": algorithm, "outer_lr": lr,
         "seed": seed, "output_dir": str(out), "save_every": 10}
    )  # fmt: skip
    done = out / "summary.json"  # a finished run (rerunning the benchmark reuses it)
    summary = json.loads(done.read_text("utf-8")) if done.exists() else None
    summary = summary or run_meta(cfg, progress=False).model_dump()
    events = read_metrics(out / "metrics.jsonl")
    return {
        **summary,
        "seconds_per_meta_step": statistics.mean(e["seconds"] for e in events),
        "peak_rss_mb": max(e["peak_rss_mb"] for e in events),
    }


def sft_run(plan: dict[str, Any], suite: Path, tokens: int, seed: int, out: Path) -> dict[str, Any]:
    """Multi-task SFT on the same training items, for about ``tokens`` tokens."""
    batch_tokens = 4 * plan["meta"]["max_seq_len"]
    cfg = SFTConfig.model_validate(
        {
            "model": plan["model"],
            "output_dir": str(out),
            "datasets": [{"path": str(suite), "kind": "tasks", "split": "train"}],
            "max_seq_len": plan["meta"]["max_seq_len"],
            "lora": plan["meta"].get("lora", {}),
            "train": {"lr": plan["sft_lr"], "batch_tokens": batch_tokens, "seed": seed,
                      "max_steps": max(1, math.ceil(tokens / batch_tokens)), "epochs": 100},
        }
    )  # fmt: skip
    done = out / "summary.json"  # a finished run (rerunning the benchmark reuses it)
    if not done.exists():
        run_sft(cfg, progress=False)
    summary = json.loads(done.read_text("utf-8"))
    return {"tokens": summary["fit"]["tokens"], "seconds": summary["seconds"]}


def pooled(parts: list[EvalResults]) -> EvalResults:
    """One results object whose curves pool the per-unit values of every training seed."""
    systems = parts[0].systems
    curves = {}
    for m in METRICS:
        values: dict[str, dict[int, list[float]]] = {s: {} for s in systems}
        for part in parts:
            for s, by_k in part.meta["unit_values"][m].items():
                for k, v in by_k.items():
                    values[s].setdefault(int(k), []).extend(v)
        curves[m] = build_curve(m, values, higher_is_better=m != "query_loss")
    first = parts[0]
    return EvalResults(
        title="Adaptation to held-out clusters: SFT vs base, FOMAML, Reptile",
        created=now(),
        systems=systems,
        tasks=first.tasks,
        overall=first.overall,
        curves=curves,
        meta={"note": "tasks/overall rows: the first training seed only; curves pool every seed"},
    )


def run_seed(plan: dict[str, Any], suite: Path, seed: int, out: Path) -> None:
    """One training seed: both meta-learners, the SFT baseline, and ``eval adapt`` of all four
    initializations with eval seed = training seed (``adapt-SEED.json``, ``costs-SEED.json``)."""
    runs = {a: meta_run(plan, a, seed, out / f"{a}-{seed}") for a in ("fomaml", "reptile")}
    sft = sft_run(plan, suite, runs["fomaml"]["tokens"], seed, out / f"sft-{seed}")
    started = time.perf_counter()
    cfg = AdaptConfig.model_validate(
        {**plan["adapt"], "model": plan["model"], "seeds": [seed],
         "out": str(out / f"adapt-{seed}.json"),
         "inits": [{"name": "sft", "adapter": str(out / f"sft-{seed}" / "adapter")},
                   {"name": "base"},
                   {"name": "fomaml", "adapter": str(out / f"fomaml-{seed}" / "adapter")},
                   {"name": "reptile", "adapter": str(out / f"reptile-{seed}" / "adapter")}]}
    )  # fmt: skip
    run_adapt_eval(cfg, progress=True)
    costs = {**runs, "sft": sft, "adapt_seconds": round(time.perf_counter() - started, 1)}
    (out / f"costs-{seed}.json").write_text(json.dumps(costs, indent=2), "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/meta_adapt")
    ap.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke run")
    ap.add_argument(
        "--seeds", type=int, nargs="*", default=None,
        help="training seeds to run in this process (default: the plan's); run one process "
        "per seed on a multi-core machine, then --pool",
    )  # fmt: skip
    ap.add_argument("--pool", action="store_true", help="only pool the seeds already in --out")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suite = write_suite(out / "suite.jsonl")
    if not args.pool:
        for seed in plan["seeds"] if args.seeds is None else args.seeds:
            run_seed(plan, suite, seed, out)
    seeds = sorted(int(p.stem.split("-")[1]) for p in out.glob("costs-*.json"))
    parts = [load_eval_results(out / f"adapt-{s}.json") for s in seeds]
    costs = {s: json.loads((out / f"costs-{s}.json").read_text("utf-8")) for s in seeds}
    results = pooled(parts)
    save_eval_results(results, out / "adapt.json")
    write_report([out / "adapt.json"], out / "report.html")
    for metric in ("lenient", "query_loss"):  # the report's plots as files, for RESULTS.md
        uri = curve_plot(results.curves[metric])
        (out / f"{metric}.png").write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    print(format_adapt_summary(results))
    for metric in ("lenient", "query_loss"):
        print(f"{metric}: each initialization minus SFT, paired (diff [95% CI], p):")
        for system, rows in results.curves[metric].comparisons.items():
            cells = ", ".join(
                f"k={r.k}: {r.comparison.diff:+.3f} [{r.comparison.ci_low:+.3f}, "
                f"{r.comparison.ci_high:+.3f}] p={r.comparison.p_permutation:.3f}"
                for r in rows
            )
            print(f"  {system}: {cells}")
    for seed, c in costs.items():
        for a in ("fomaml", "reptile"):
            print(
                f"seed {seed} {a}: {c[a]['seconds_per_meta_step']:.2f} s/meta-step, peak RSS "
                f"{c[a]['peak_rss_mb']:.0f} MB, {c[a]['tokens']} tokens"
            )
        print(
            f"seed {seed} sft: {c['sft']['tokens']} tokens in {c['sft']['seconds']} s; "
            f"eval adapt {c['adapt_seconds']} s"
        )
    print(f"results: {out / 'adapt.json'}, report: {out / 'report.html'}")


if __name__ == "__main__":
    main()
