"""Write the IFEval-style prompt files of the PPO evidence runs (docs/ppo.md, "What was measured").

    python benchmarks/ppo_prompts.py out/ppo_prompts
    OMP_NUM_THREADS=1 instructkit train ppo out/ppo_prompts/lowercase_nocomma.train.jsonl \
        -o out/ppo_run --reward ifeval --set rollout.batch_size=8 --set rollout.max_new_tokens=24 \
        --set train.steps=6 --set train.minibatch_size=4 --set train.epochs=1 \
        --set train.lr=5e-4 --set max_seq_len=128

24 topics, shuffled with seed 0: 16 training prompts, 8 held out. ``lowercase`` asks for all
lowercase letters (IFEval ``change_case:english_lowercase``); ``lowercase_nocomma`` adds
``punctuation:no_comma``, so the reward is 0, 0.5 or 1.
"""

import json
import random
import sys
from pathlib import Path

TOPICS = [
    "the ocean", "a rainy day", "coffee", "mountains", "a city at night", "cats", "the moon",
    "autumn leaves", "a library", "trains", "bread", "the desert", "gardening", "music", "snow",
    "bicycles", "the forest", "a market", "stars", "friendship", "rivers", "old houses", "birds",
    "summer",
]  # fmt: skip
LOWER = (
    "Write two sentences about {t}. Your entire response should be in English, and in all "
    "lowercase letters. No capital letters are allowed."
)


def rows(kind: str) -> list[dict]:
    out = []
    for t in TOPICS:
        ids = ["change_case:english_lowercase"]
        row = {"prompt": LOWER.format(t=t), "instruction_id_list": ids, "kwargs": [{}]}
        if kind == "lowercase_nocomma":
            row["prompt"] += " Do not use any commas."
            row["instruction_id_list"].append("punctuation:no_comma")
            row["kwargs"].append({})
        out.append(row)
    random.Random(0).shuffle(out)
    return out


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for kind in ("lowercase", "lowercase_nocomma"):
        r = rows(kind)
        for split, part in (("train", r[:16]), ("heldout", r[16:])):
            (out / f"{kind}.{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in part))
    print(f"wrote {out}/{{lowercase,lowercase_nocomma}}.{{train,heldout}}.jsonl")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/ppo_prompts")
