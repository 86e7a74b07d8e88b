"""Benchmark of the Self-Instruct ROUGE-L filter: speed at 50K, recall against brute force.

    .venv/bin/python benchmarks/dedup_bench.py [--n 50000] [--sample 2000] [--num-perm 128]

1. ``filter_near_duplicates`` on ``--n`` deterministic synthetic instructions (3,000 made-up
   words, opener/body/tail templates, 20% edited near-duplicates): wall time.
2. On the first ``--sample`` of them (a random subset would hold few near-duplicate pairs,
   since each variant edits an earlier text of the whole corpus): decisions against
   ``exhaustive_filter`` (agreement, recall of the exhaustive drops), and candidate recall
   over every pair with ROUGE-L >= 0.7.
3. Worst case of the bound: pairs of 10 distinct tokens with 3 substituted (ROUGE-L 0.7,
   multiset Jaccard 7/13): the share that become candidates, against the predicted recall.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

from instructkit.data.similarity import (
    NearDupIndex,
    exhaustive_filter,
    filter_near_duplicates,
    rouge_l_f,
    rouge_tokens,
    synthetic_instructions,
)


def decisions_vs_exhaustive(texts: list[str], num_perm: int) -> dict[str, float]:
    t0 = time.perf_counter()
    kept_ref, dropped_ref = exhaustive_filter(texts)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept, dropped = filter_near_duplicates(texts, num_perm=num_perm)
    t_lsh = time.perf_counter() - t0
    ref, got = set(kept_ref), set(kept)
    ref_drop = {i for i, *_ in dropped_ref}
    return {
        "dropped": len(dropped_ref),
        "agreement": sum((i in ref) == (i in got) for i in range(len(texts))) / len(texts),
        "recall": len(ref_drop & {i for i, *_ in dropped}) / max(1, len(ref_drop)),
        "false_drops": len({i for i, *_ in dropped} - ref_drop),
        "t_exhaustive": t_ref,
        "t_lsh": t_lsh,
    }


def pair_candidate_recall(texts: list[str], num_perm: int) -> tuple[int, float]:
    """Share of all pairs with ROUGE-L >= 0.7 that LSH proposes as candidates."""
    index = NearDupIndex(num_perm=num_perm)
    tokens = [rouge_tokens(t) for t in texts]
    for t in texts:
        index.add(t)
    true_pairs = found = 0
    for i, t in enumerate(texts):
        cands = set(index.candidates(t))
        for j in range(i):
            if rouge_l_f(tokens[i], tokens[j]) >= 0.7:
                true_pairs += 1
                found += j in cands
    return true_pairs, found / max(1, true_pairs)


def worst_case_recall(pairs: int, num_perm: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    hits = 0
    for p in range(pairs):
        index = NearDupIndex(num_perm=num_perm, seed=p)
        words = [f"w{rng.randrange(10**9)}" for _ in range(13)]
        index.add(" ".join(words[:10]))
        hits += 0 in index.candidates(" ".join(words[:7] + words[10:]))
    return hits / pairs, index.params.recall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--sample", type=int, default=2_000)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--worst-pairs", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command:", " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}"
    )
    params = NearDupIndex(num_perm=args.num_perm).params
    print(
        f"LSH: {params.bands} bands x {params.rows} rows, >= {params.min_hits} band hits; "
        f"recall {params.recall:.4f} at Jaccard {params.jaccard_bound:.4f} (ROUGE-L 0.7)\n"
    )

    t0 = time.perf_counter()
    texts = synthetic_instructions(args.n, seed=args.seed)
    t_gen = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    kept, dropped = filter_near_duplicates(texts, num_perm=args.num_perm)
    t_filter, c_filter = time.perf_counter() - t0, time.process_time() - c0

    sample = texts[: args.sample]  # a prefix keeps its near-duplicates (edits of earlier texts)
    dec = decisions_vs_exhaustive(sample, args.num_perm)
    true_pairs, pair_recall = pair_candidate_recall(sample, args.num_perm)
    worst, predicted = worst_case_recall(args.worst_pairs, args.num_perm, args.seed)

    rows = [
        (f"filter {args.n:,} texts: wall (cpu)", f"{t_filter:.1f} s ({c_filter:.1f} s)"),
        ("  kept / dropped", f"{len(kept):,} / {len(dropped):,}"),
        ("  throughput", f"{args.n / t_filter:,.0f} texts/s (generation {t_gen:.1f} s)"),
        (f"sample {args.sample:,}: exhaustive drops", f"{dec['dropped']:,}"),
        ("  decision agreement", f"{dec['agreement']:.4f}"),
        ("  recall of exhaustive drops", f"{dec['recall']:.4f}"),
        ("  false drops", f"{dec['false_drops']}"),
        ("  time exhaustive / LSH", f"{dec['t_exhaustive']:.2f} s / {dec['t_lsh']:.2f} s"),
        ("  pairs with ROUGE-L >= 0.7", f"{true_pairs:,}"),
        ("  pair candidate recall", f"{pair_recall:.4f}"),
        (f"worst-case pairs ({args.worst_pairs:,})", f"{worst:.4f} (predicted {predicted:.4f})"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")


if __name__ == "__main__":
    main()
