"""Held-out evidence for `train ppo` and `train grpo`: a verifiable IFEval reward on prompts the
run never saw, base vs tuned, paired per prompt; KL to the base; other IFEval instructions.

    OMP_NUM_THREADS=1 python benchmarks/rl_verifiable.py prompts --out runs/rl_bench
    OMP_NUM_THREADS=1 instructkit train ppo runs/rl_bench/train.jsonl -o runs/rl_bench/ppo ...
    OMP_NUM_THREADS=1 python benchmarks/rl_verifiable.py sample --out runs/rl_bench/base
    OMP_NUM_THREADS=1 python benchmarks/rl_verifiable.py sample --out runs/rl_bench/ppo_eval \
        --adapter runs/rl_bench/ppo/adapter
    python benchmarks/rl_verifiable.py compare runs/rl_bench/base runs/rl_bench/ppo_eval

(`all` runs these for PPO and GRPO with the settings recorded in benchmarks/RESULTS.md.)

Prompts: two trained instruction families that the embedded SmolLM2-135M follows some of the
time (so a sampled group has reward variance): "include the word W" (IFEval
``keywords:existence``) and "do not use any commas" (``punctuation:no_comma``). Training
prompts use 40 topics and 20 keywords; held-out prompts 16 other topics and 16 other keywords.
"Other" prompts carry four instructions never trained on (postscript, highlighted section,
title in << >>, a keyword used twice) on the held-out topics: the check that tuning on two
instructions does not cost the rest.

Sampling is seeded per prompt and sample, identical for base and tuned (common random
numbers), temperature 1, as the RL rollouts. The tuned policy's KL to the base is the mean over
its samples of sum_t (log pi(y_t) - log ref(y_t)) (the k1 estimate per sequence, in nats), the
quantity PPO's penalty controls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TRAIN_TOPICS = [
    "the ocean", "a rainy day", "coffee", "mountains", "a city at night", "cats", "the moon",
    "autumn leaves", "a library", "trains", "bread", "the desert", "gardening", "music", "snow",
    "bicycles", "the forest", "a market", "stars", "friendship", "rivers", "old houses", "birds",
    "summer", "a lighthouse", "chess", "volcanoes", "a bakery", "winter mornings", "islands",
    "the subway", "honey bees", "a museum", "thunderstorms", "kites", "a farm", "the harbor",
    "glaciers", "a campfire", "owls",
]  # fmt: skip
HELDOUT_TOPICS = [
    "dolphins", "a bridge", "tea", "the countryside", "robots", "a wedding", "deserts at dawn",
    "a bookshop", "football", "a waterfall", "the post office", "penguins", "a train station",
    "spring rain", "a violin", "the city park",
]  # fmt: skip
TRAIN_WORDS = [
    "window", "seven", "paper", "silver", "quiet", "yellow", "ladder", "pocket", "candle",
    "mirror", "orange", "basket", "whistle", "marble", "velvet", "anchor", "pepper", "ribbon",
    "copper", "lantern",
]  # fmt: skip
HELDOUT_WORDS = [
    "button", "thunder", "violet", "hammer", "blanket", "compass", "feather", "puzzle", "saddle",
    "tunnel", "walnut", "zipper", "bucket", "crystal", "helmet", "pillow",
]  # fmt: skip


def _keyword(topic: str, word: str) -> dict[str, Any]:
    prompt = f'Write two sentences about {topic}. Include the word "{word}" in your response.'
    return _row(prompt, "keywords:existence", {"keywords": [word]}, "keyword")


def _no_comma(topic: str) -> dict[str, Any]:
    prompt = f"Write two sentences about {topic}. Do not use any commas in your response."
    return _row(prompt, "punctuation:no_comma", {}, "no_comma")


def _others(topic: str, word: str) -> list[dict[str, Any]]:
    return [
        _row(f"Write one sentence about {topic}. At the end of your response, add a postscript "
             "starting with P.S.", "detectable_content:postscript", {"postscript_marker": "P.S."},
             "postscript"),
        _row(f"Write two sentences about {topic}. Highlight at least 1 section in your answer "
             "with markdown, i.e. *highlighted section*.",
             "detectable_format:number_highlighted_sections", {"num_highlights": 1}, "highlight"),
        _row(f"Write a short poem about {topic}. Your answer must contain a title, wrapped in "
             "double angular brackets, such as <<poem of joy>>.", "detectable_format:title", {},
             "title"),
        _row(f'Write a sentence about {topic} that uses the word "{word}" twice.',
             "keywords:frequency", {"keyword": word, "frequency": 2, "relation": "at least"},
             "keyword_twice"),
    ]  # fmt: skip


def _row(prompt: str, instruction: str, kwargs: dict[str, Any], family: str) -> dict[str, Any]:
    return {
        "prompt": prompt, "instruction_id_list": [instruction], "kwargs": [kwargs],
        "family": family,
    }  # fmt: skip


def write_prompts(out: Path) -> None:
    """train.jsonl (80 rows), heldout.jsonl (32), other.jsonl (64)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = TRAIN_WORDS * 2
    train = [_keyword(t, w) for t, w in zip(TRAIN_TOPICS, words, strict=True)]
    train += [_no_comma(t) for t in TRAIN_TOPICS]
    rng.shuffle(train)
    held = [_keyword(t, w) for t, w in zip(HELDOUT_TOPICS, HELDOUT_WORDS, strict=True)]
    held += [_no_comma(t) for t in HELDOUT_TOPICS]
    other = [r for t, w in zip(HELDOUT_TOPICS, HELDOUT_WORDS, strict=True) for r in _others(t, w)]
    for name, rows in (("train", train), ("heldout", held), ("other", other)):
        for i, row in enumerate(rows):
            row["id"] = f"{name}-{i}"
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {out}/train.jsonl ({len(train)}), heldout.jsonl ({len(held)}), "
          f"other.jsonl ({len(other)})")  # fmt: skip


def _load(model_name: str, adapter: str | None) -> tuple[Any, Any]:
    from instructkit.models import load_model

    model, tok = load_model(model_name)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model, tok


def _sample_rows(
    model: Any, tok: Any, rows: list[dict[str, Any]], samples: int, max_new: int, seed: int
) -> list[dict[str, Any]]:
    """One generate call per prompt (its samples), seeded by (seed, prompt index)."""
    import torch

    from instructkit.evaluate.ifeval import followed_share, parse_ifeval_row
    from instructkit.losses import token_logprobs

    tok.padding_side = "left"
    end = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    for i, row in enumerate(rows):
        text = tok.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        torch.manual_seed(seed * 100003 + i)
        with torch.no_grad():
            ids = model.generate(
                **enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                max_new_tokens=max_new, num_return_sequences=samples,
                eos_token_id=end, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        n = enc["input_ids"].shape[1]
        resp = ids[:, n:]
        mask = torch.cumsum((resp == end).long(), dim=1)
        mask = ((mask == 0) | ((mask == 1) & (resp == end))).float()
        kl = _kl(model, ids, n, resp, mask, token_logprobs)
        for j in range(samples):
            text_j = tok.decode(resp[j][mask[j].bool()], skip_special_tokens=True)
            value = {**row, "response": text_j}
            reward = followed_share(parse_ifeval_row(value))
            out.append({
                "id": row["id"], "family": row["family"], "sample": j, "response": text_j,
                "reward": reward, "kl": kl[j] if kl is not None else None,
                "length": int(mask[j].sum()), "truncated": bool((resp[j] == end).sum() == 0),
            })  # fmt: skip
        if (i + 1) % 8 == 0:
            print(f"  {i + 1}/{len(rows)} prompts", flush=True)
    return out


def _kl(model: Any, ids: Any, n: int, resp: Any, mask: Any, token_logprobs: Any) -> Any:
    """k1 KL per sequence between the adapter policy and the base (None without an adapter)."""
    import torch

    if not hasattr(model, "disable_adapter"):
        return None
    with torch.no_grad():
        logits = model(ids).logits[:, n - 1 : -1]
        pol = token_logprobs(logits, resp, 1.0)
        with model.disable_adapter():
            ref = token_logprobs(model(ids).logits[:, n - 1 : -1], resp, 1.0)
    return ((pol - ref) * mask).sum(dim=1).tolist()


def sample(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    model, tok = _load(args.model, args.adapter)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = Path(args.prompts)
    for split, k in (("heldout", args.samples), ("other", args.other_samples)):
        rows = [json.loads(line) for line in (prompts / f"{split}.jsonl").open()]
        print(f"{split}: {len(rows)} prompts x {k} samples", flush=True)
        got = _sample_rows(model, tok, rows, k, args.max_new_tokens, args.seed)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in got))
    print(f"sampled in {time.time() - t0:.0f} s -> {out}")


def _per_prompt(path: Path) -> dict[str, dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for line in path.open():
        r = json.loads(line)
        e = by.setdefault(r["id"], {"family": r["family"], "rewards": [], "kl": [], "len": []})
        e["rewards"].append(r["reward"])
        e["len"].append(r["length"])
        if r["kl"] is not None:
            e["kl"].append(r["kl"])
    return by


def compare(base_dir: Path, tuned_dir: Path) -> dict[str, Any]:
    """Per split and family: mean reward base/tuned, paired diff, CI, permutation p; KL."""
    from instructkit.evaluate.stats import compare_paired

    out: dict[str, Any] = {}
    for split in ("heldout", "other"):
        a, b = _per_prompt(base_dir / f"{split}.jsonl"), _per_prompt(tuned_dir / f"{split}.jsonl")
        ids = sorted(a)
        groups = {"all": ids} | {f: [i for i in ids if a[i]["family"] == f] for f in
                                 sorted({a[i]["family"] for i in ids})}  # fmt: skip
        for name, members in groups.items():
            ra = [sum(a[i]["rewards"]) / len(a[i]["rewards"]) for i in members]
            rb = [sum(b[i]["rewards"]) / len(b[i]["rewards"]) for i in members]
            c = compare_paired(ra, rb)
            kls = [k for i in members for k in b[i]["kl"]]
            out[f"{split}/{name}"] = {
                "n_prompts": c.n, "base": round(c.mean_a, 4), "tuned": round(c.mean_b, 4),
                "diff": round(c.diff, 4), "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
                "p": c.p_permutation,
                "kl_mean": round(sum(kls) / len(kls), 3) if kls else None,
                "length_base": round(sum(sum(a[i]["len"]) for i in members)
                                     / sum(len(a[i]["len"]) for i in members), 1),
                "length_tuned": round(sum(sum(b[i]["len"]) for i in members)
                                      / sum(len(b[i]["len"]) for i in members), 1),
            }  # fmt: skip
    return out


def _print(table: dict[str, Any]) -> None:
    print(f"{'split/family':28} {'n':>3} {'base':>6} {'tuned':>6} {'diff':>7} {'95% CI':>17} "
          f"{'p':>7} {'KL':>6}")  # fmt: skip
    for k, v in table.items():
        kl = "-" if v["kl_mean"] is None else f"{v['kl_mean']:.2f}"
        print(f"{k:28} {v['n_prompts']:3d} {v['base']:6.3f} {v['tuned']:6.3f} {v['diff']:+7.3f} "
              f"[{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}] {v['p']:7.4f} {kl:>6}")  # fmt: skip


def _train(method: str, out: Path, sets: list[str]) -> dict[str, Any]:
    """Run `instructkit train METHOD` in a child process; wall time and its peak RSS."""
    cmd = [sys.executable, "-m", "instructkit", "train", method,
           str(out.parent / "train.jsonl"), "-o", str(out), "--reward", "ifeval"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    child = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{method} failed (status {status})")
    wall = round(time.time() - t0, 1)
    return {"command": " ".join(cmd), "wall_s": wall, "peak_rss_mb": round(usage.ru_maxrss / 1024)}


PPO_SETS = [
    "rollout.batch_size=16", "rollout.max_new_tokens=48", "train.steps=12",
    "train.minibatch_size=8", "train.epochs=2", "train.lr=5e-4", "kl.coef=0.05",
    "max_seq_len=160", "train.save_every=4",
]  # fmt: skip
GRPO_SETS = [
    "num_generations=4", "max_completion_length=48", "train.batch_size=16", "train.max_steps=12",
    "train.lr=5e-4", "beta=0.04", "train.save_every=4", "train.schedule=constant",
]  # fmt: skip


def run_all(args: argparse.Namespace) -> None:
    root = Path(args.out)
    write_prompts(root)
    here = [sys.executable, __file__, "sample", "--prompts", str(root)]
    if not (root / "base" / "other.jsonl").is_file():
        subprocess.run([*here, "--out", str(root / "base")], check=True)
    report: dict[str, Any] = {}
    for method in args.methods:
        run = root / method
        sets = PPO_SETS if method == "ppo" else GRPO_SETS
        info = _train(method, run, sets)
        subprocess.run([*here, "--out", str(root / f"{method}_eval"), "--adapter",
                        str(run / "adapter")], check=True)  # fmt: skip
        table = compare(root / "base", root / f"{method}_eval")
        report[method] = {"train": info, "compare": table}
        print(f"\n== {method} ==")
        _print(table)
        (root / f"report_{method}.json").write_text(json.dumps(report[method], indent=2))


def plot(root: Path, png: Path) -> None:
    """Training reward and KL against the step, PPO and GRPO side by side (their KL units
    differ: PPO logs the k1 KL per response, TRL's GRPO the k3 KL per token)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    kl_axes = {"ppo": axes[1], "grpo": axes[1].twinx()}
    units = {"ppo": "PPO KL per response (k1, nats)", "grpo": "GRPO KL per token (k3, nats)"}
    for color, method in (("tab:blue", "ppo"), ("tab:orange", "grpo")):
        rows = [json.loads(x) for x in (root / method / "metrics.jsonl").open()]
        rows = [r for r in rows if "reward_mean" in r and "kl" in r]
        steps = [r["step"] for r in rows]
        rewards = [r["reward_mean"] for r in rows]
        axes[0].plot(steps, rewards, marker="o", color=color, label=method.upper())
        kl_axes[method].plot(steps, [r["kl"] for r in rows], marker="o", color=color)
        kl_axes[method].set_ylabel(units[method], color=color)
    axes[0].set(xlabel="step", ylabel="batch mean reward (train prompts)", ylim=(0, 1))
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="step", title="KL to the reference")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("prompts")
    sp.add_argument("--out", default="runs/rl_bench")
    ss = sub.add_parser("sample")
    ss.add_argument("--prompts", default="runs/rl_bench")
    ss.add_argument("--out", required=True)
    ss.add_argument("--model", default="smollm2-135m-instruct")
    ss.add_argument("--adapter")
    ss.add_argument("--samples", type=int, default=4)
    ss.add_argument("--other-samples", type=int, default=2)
    ss.add_argument("--max-new-tokens", type=int, default=48)
    ss.add_argument("--seed", type=int, default=1)
    sc = sub.add_parser("compare")
    sc.add_argument("base")
    sc.add_argument("tuned")
    sl = sub.add_parser("plot")
    sl.add_argument("root")
    sl.add_argument("png")
    sa = sub.add_parser("all")
    sa.add_argument("--out", default="runs/rl_bench")
    sa.add_argument("--methods", nargs="+", default=["ppo", "grpo"])
    args = p.parse_args()
    if args.cmd == "prompts":
        write_prompts(Path(args.out))
    elif args.cmd == "sample":
        sample(args)
    elif args.cmd == "plot":
        plot(Path(args.root), Path(args.png))
    elif args.cmd == "compare":
        _print(compare(Path(args.base), Path(args.tuned)))
    else:
        run_all(args)


if __name__ == "__main__":
    main()
