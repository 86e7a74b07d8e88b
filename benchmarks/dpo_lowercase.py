"""DPO evidence: does `train dpo` raise the held-out implicit-reward accuracy and margin?

Pairs are programmatic and verifiable: the prompt asks for an all-lowercase sentence; the
chosen response is a sentence in lowercase, the rejected one is the same sentence in Title Case
(so the pair differs only in the constraint). Train and held-out pairs use disjoint subjects.

    PYTHONPATH=src python benchmarks/dpo_lowercase.py --out /tmp/dpo_lowercase [--pairs 32]

Prints the held-out implicit-reward accuracy and mean margin before and after training (from
``summary.json``); the run folder holds metrics.jsonl and loss_curve.png.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

SUBJECTS = [
    "the river", "my neighbor", "a small dog", "the old train", "our teacher", "the garden",
    "a quiet city", "the blue car", "my brother", "the bakery", "a tall tree", "the museum",
    "the ocean", "a young bird", "the library", "my phone", "the mountain", "a busy market",
    "the winter sun", "our kitchen", "the red kite", "a lost key", "the farmer", "the bridge",
]  # fmt: skip
VERBS = ["watches", "finds", "carries", "paints", "remembers", "follows", "hears", "builds"]
OBJECTS = ["the morning light", "a green hat", "three apples", "an empty box", "the long road",
           "a paper boat", "the evening news", "a warm blanket"]  # fmt: skip
PLACES = ["near the station", "after lunch", "in the rain", "every sunday", "by the lake",
          "before dawn", "at the fair", "under the stars"]  # fmt: skip


def pair(subject: str, rng: random.Random) -> dict[str, str]:
    sentence = f"{subject} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
    return {
        "prompt": f"Write one sentence about {subject} in all lowercase letters.",
        "chosen": sentence,
        "rejected": sentence.title(),
    }


def write_data(out: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    subjects = SUBJECTS[:]
    rng.shuffle(subjects)
    held_subjects, train_subjects = subjects[:6], subjects[6:]
    n_eval = max(1, n // 4)
    train = [pair(rng.choice(train_subjects), rng) for _ in range(n - n_eval)]
    held = [pair(rng.choice(held_subjects), rng) for _ in range(n_eval)]
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train_pairs.jsonl", out / "eval_pairs.jsonl"
    for path, rows in zip(paths, (train, held), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/dpo_lowercase")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    from instructkit.train.dpo import DPORunConfig, format_summary, run_dpo

    train, held = write_data(Path(args.out), args.pairs)
    cfg = DPORunConfig.model_validate({
        "model": args.model, "output_dir": str(Path(args.out) / "run"), "data": str(train),
        "eval_path": str(held), "max_seq_len": 96, "template": "chatml", "beta": 0.1,
        "lora": {"r": 16},
        "train": {"lr": 5e-4, "max_steps": args.steps, "batch_size": args.batch, "resume": False},
    })  # fmt: skip
    started = time.perf_counter()
    result = run_dpo(cfg, progress=False)
    print(format_summary(result))
    print(f"wall {time.perf_counter() - started:.1f} s")
    print(json.dumps({"before": result.before, "after": result.after}))


if __name__ == "__main__":
    main()
