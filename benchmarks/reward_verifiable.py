"""Reward model on verifiable preferences: held-out pair accuracy of `instructkit train reward`.

Builds 200 preference pairs whose preferred response satisfies a checkable constraint (IFEval
style), half of each kind:

- lowercase: "Use only lowercase letters." chosen is all lowercase; rejected is the same
  sentence in sentence case, Title Case or UPPER CASE (rotating);
- keyword: "... that includes the word 'W'." chosen contains W; rejected is the same sentence
  with another keyword from the same list in its place (so "has some keyword" is not enough:
  the model has to match the prompt's word).

Prompts of 40 topics train, those of 10 other topics are held out (no held-out prompt or topic
is trained on). Trains with the CLI, then scores the held-out pairs again per kind through the
saved model (``load_reward_model``, the RewardFn that PPO/GRPO use)::

    python benchmarks/reward_verifiable.py --out runs/reward_bench   # embedded SmolLM2
    python benchmarks/reward_verifiable.py --model tiny-random-llama --out /tmp/rb \
        --target all-linear --set max_seq_len=256 --set train.batch_tokens=4096  # smoke

Measured (2 shared CPU cores, embedded SmolLM2-135M, LoRA r=16 on the top 6 layers + head,
1 epoch = 8 steps, 170 s of training): held-out pair accuracy 0.350 before -> 0.925 after
(lowercase 0.95, keyword 0.90, 40 pairs on 10 unseen topics), mean margin 0.116, ECE 0.395
(right but under-confident: the margins are still small after 8 steps).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TOPICS = (
    "tea rivers cats maps bread music trees boats snow clocks bees stars roads paper salt wind "
    "lamps fish hills books coffee bridges gardens trains clouds candles shoes forests islands "
    "kites apples bicycles castles deserts eagles fountains glaciers harbors jungles lanterns "
    "meadows oceans pianos puzzles rockets sails tigers valleys volcanoes windmills"
).split()
KEYWORDS = "bright quiet ancient gentle golden hidden simple lively".split()
SENTENCES = [
    "{T} are part of daily life for many people around the {w} world.",
    "Many people say that {t} make a {w} place feel more welcoming.",
    "Stories about {t} often describe a {w} morning by the sea.",
    "In winter, {t} can look {w} under the pale sky.",
]


def _cases(s: str, k: int) -> str:
    return [s[0].upper() + s[1:], s.title(), s.upper()][k % 3]


def build_pairs(topics: list[str], offset: int) -> list[dict]:
    rows = []
    for i, topic in enumerate(topics):
        n = offset + i
        for j in range(2):  # lowercase pairs
            s = SENTENCES[(n + j) % 4].format(T=topic.capitalize(), t=topic, w="calm")
            rows.append(
                {
                    "prompt": f"Write one sentence about {topic}. Use only lowercase letters.",
                    "chosen": s.lower(),
                    "rejected": _cases(s, n + j),
                    "kind": "lowercase",
                }
            )
        for j in range(2):  # keyword pairs
            kw, other = KEYWORDS[(n + 3 * j) % 8], KEYWORDS[(n + 3 * j + 1) % 8]
            s = SENTENCES[(n + j + 1) % 4]
            rows.append(
                {
                    "prompt": f"Write one sentence about {topic} that includes the word '{kw}'.",
                    "chosen": s.format(T=topic.capitalize(), t=topic, w=kw),
                    "rejected": s.format(T=topic.capitalize(), t=topic, w=other),
                    "kind": "keyword",
                }
            )
    return rows


def write(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", default="runs/reward_bench")
    ap.add_argument("--epochs", default="1")
    # LoRA on the top 6 of SmolLM2's 30 layers: backward stops there, which keeps the run
    # within a few CPU minutes (the score head is trained in full either way)
    ap.add_argument("--target", default=r".*layers\.(2[4-9])\.(self_attn|mlp)\.\w+_proj")
    ap.add_argument("--set", dest="extra", action="append", default=[])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, held = build_pairs(TOPICS[:40], 0), build_pairs(TOPICS[40:], 40)
    write(train, out / "train.jsonl")
    write(held, out / "held_out.jsonl")
    cmd = [
        sys.executable, "-m", "instructkit", "train", "reward", str(out / "train.jsonl"),
        "-o", str(out / "rm"), "--model", args.model, "--eval", str(out / "held_out.jsonl"),
        "--set", "template=chatml", "--set", "max_seq_len=128", "--set", "train.batch_tokens=2048",
        "--set", f"train.epochs={args.epochs}", "--set", "train.lr=5e-4",
        "--set", "train.eval_every=10", "--set", f"lora.target={args.target}",
        *[x for kv in args.extra for x in ("--set", kv)],
    ]  # fmt: skip
    print(" ".join(cmd[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - started

    from instructkit.train.reward_model import load_reward_model
    from instructkit.train.rewards import RewardItem

    rm = load_reward_model(out / "rm")
    per_kind: dict[str, list[bool]] = {}
    for row in held:
        good, bad = rm([RewardItem(row["prompt"], row["chosen"]),
                        RewardItem(row["prompt"], row["rejected"])])  # fmt: skip
        per_kind.setdefault(row["kind"], []).append(good > bad)
    metrics = json.loads((out / "rm" / "metrics.json").read_text("utf-8"))
    report = {
        "model": args.model,
        "train_pairs": len(train),
        "held_out_pairs": len(held),
        "eval_accuracy_start": metrics["eval_accuracy_start"],
        "eval_accuracy": metrics["eval_accuracy"],
        "eval_margin": metrics["eval_margin"],
        "ece": metrics["ece"],
        "per_kind_accuracy": {k: sum(v) / len(v) for k, v in per_kind.items()},
        "steps": metrics["steps"],
        "wall_seconds": round(seconds, 1),
    }
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2), "utf-8")


if __name__ == "__main__":
    main()
