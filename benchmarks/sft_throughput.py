"""SFT throughput: naive padded loop vs TRL SFTTrainer vs instructkit, same data and model.

Each path runs in a child process (so peak memory is its own) on identical synthetic data of
instruction-like lengths (token ids drawn at random; prompt and response lengths log-normal),
from the same initial weights. Reported: non-padding tokens/s over the timed steps, MFU
(6 * N * tokens/s over the GPU's bf16 peak; not reported on CPU), peak memory, and the loss of
each path on the same fixed batch of 8 examples, computed by that path's own machinery (padded
batch, TRL's collator and compute_loss, instructkit's packed varlen forward), which must equal
the loss of the examples run one by one (same objective).

  python benchmarks/sft_throughput.py --device cpu --model tiny-random-llama
  python benchmarks/sft_throughput.py --device cpu --model smollm2-135m-instruct --batch-tokens 2048
  python benchmarks/sft_throughput.py --device cuda --model arch:qwen2.5-0.5b --batch-tokens 16384

Paths: naive = padded batches, full logits, HF loss; trl = TRL SFTTrainer (bfd packing,
padding-free, completion-only loss; the LM head only at completion positions; gradient
checkpointing off); instructkit = instructkit.train.loop.fit (bfd packing, per-example
attention, LM head only at loss positions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any

PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
ARCHS = {
    # random-init architectures (no download): hidden, intermediate, layers, heads, kv, vocab
    "smollm2-135m": ("llama", 576, 1536, 30, 9, 3, 49152),
    "qwen2.5-0.5b": ("qwen2", 896, 4864, 24, 14, 2, 151936),
}


def build_model(name: str, dtype: Any, device: str) -> tuple[Any, int]:
    """(model, vocab size) for a registry name or ``arch:NAME`` (random init)."""
    import torch

    if name.startswith("arch:"):
        from transformers import AutoConfig, AutoModelForCausalLM

        kind, h, inter, layers, heads, kv, vocab = ARCHS[name[5:]]
        config = AutoConfig.for_model(
            kind,
            hidden_size=h,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=vocab,
            tie_word_embeddings=True,
            max_position_embeddings=32768,
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        from instructkit.models import load_model

        model, _ = load_model(name, dtype=dtype)
    return model.to(device), model.config.vocab_size


def make_examples(n: int, vocab: int, max_len: int, seed: int) -> list[Any]:
    """Token ids with -100 on the prompt: log-normal lengths (prompt ~ 90, response ~ 150)."""
    import numpy as np

    from instructkit.data.tokenize import TokenizedExample

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = int(np.clip(rng.lognormal(math.log(70), 0.7), 8, max_len // 2))
        r = int(np.clip(rng.lognormal(math.log(110), 0.8), 4, max_len - p))
        ids = rng.integers(100, vocab - 100, size=p + r).tolist()
        out.append(TokenizedExample(ids, [-100] * p + ids[p:]))
    return out


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reference_loss(model: Any, examples: list[Any], device: str) -> float:
    """Token-weighted loss on a fixed batch, each example on its own (the ground truth)."""
    import torch

    from instructkit.losses import response_only_loss

    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            ids = torch.tensor([e.input_ids], device=device)
            hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
            s, n = response_only_loss(
                hidden, torch.tensor([e.labels], device=device), model.get_output_embeddings()
            )
            total, count = total + float(s), count + n
    return total / count


def run_naive(model: Any, examples: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Padded batches of similar length, full logits, transformers' own loss."""
    import torch

    from instructkit.data.batching import length_grouped_batches, pad_batch

    fixed = {k: v.to(args.device) for k, v in pad_batch(examples[:8], 0).items()}
    with torch.no_grad():
        fixed_loss = float(model(**fixed, use_cache=False).loss)
    lengths = [len(e.input_ids) for e in examples]
    per_batch = max(1, args.batch_tokens // max(lengths))
    batches = length_grouped_batches(lengths, per_batch, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    times, tokens, losses = [], 0, []
    for step, idx in enumerate(batches[: args.warmup + args.steps]):
        b = {k: v.to(args.device) for k, v in pad_batch([examples[i] for i in idx], 0).items()}
        sync(args.device)
        t0 = time.perf_counter()
        loss = model(**b, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(args.device)
        losses.append(float(loss))
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            tokens += int(b["attention_mask"].sum())
    return {"tokens": tokens, "seconds": sum(times), "losses": losses, "fixed_loss": fixed_loss}


def run_instructkit(model: Any, examples: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from instructkit.train.attention import use_varlen_attention
    from instructkit.train.loop import FitData, ResponseLoss, TrainConfig, collate, fit

    base_impl = model.config._attn_implementation
    use_varlen_attention(model)
    with torch.no_grad():
        s, n = ResponseLoss(model)(collate(examples[:8], True, 0, torch.device(args.device)))
    model.set_attn_implementation(base_impl)
    fixed_loss = float(s) / n
    events: list[dict[str, Any]] = []
    cfg = TrainConfig(
        lr=1e-5,
        max_steps=args.warmup + args.steps,
        batch_tokens=args.batch_tokens,
        warmup_ratio=0.0,
        grad_clip=None,
        schedule="constant",
    )
    fit(model, FitData(examples), cfg, log=events.append, progress=False)
    # tok_per_s in the events is cumulative since the start; take the timed window
    timed = [e for e in events if e["step"] > args.warmup]
    t_start = events[args.warmup - 1]["tokens"] / events[args.warmup - 1]["tok_per_s"]
    t_end = timed[-1]["tokens"] / timed[-1]["tok_per_s"]
    tokens = timed[-1]["tokens"] - events[args.warmup - 1]["tokens"]
    return {
        "tokens": tokens,
        "seconds": t_end - t_start,
        "losses": [e["loss"] for e in events],
        "fixed_loss": fixed_loss,
    }


def run_trl(model: Any, examples: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from instructkit.models import build_tiny_tokenizer

    rows = {
        "input_ids": [e.input_ids for e in examples],
        "completion_mask": [[int(x != -100) for x in e.labels] for e in examples],
    }
    tok: PreTrainedTokenizerFast = build_tiny_tokenizer()  # only used for pad/eos ids
    record: dict[str, Any] = {"times": [], "tokens": 0, "losses": []}

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):  # noqa: ANN001
            sync(args.device)
            record["t0"] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001
            sync(args.device)
            if state.global_step > args.warmup:
                record["times"].append(time.perf_counter() - record["t0"])

    cfg = SFTConfig(
        output_dir=args.tmp,
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=1,
        packing=True,
        packing_strategy="bfd",
        max_length=args.batch_tokens,
        completion_only_loss=True,
        learning_rate=1e-5,
        lr_scheduler_type="constant",
        bf16=args.device == "cuda",
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        max_grad_norm=0.0,
        use_cpu=args.device == "cpu",
        dataset_num_proc=1,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=cfg,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tok,
        callbacks=[Timer()],
    )
    collate = trainer.data_collator
    # the trainer builds "labels" from completion_mask while preparing its dataset; give the
    # collator the same labels for the fixed batch
    fixed = collate([{"input_ids": e.input_ids, "labels": e.labels} for e in examples[:8]])
    fixed = {k: v.to(args.device) if hasattr(v, "to") else v for k, v in fixed.items()}
    import torch

    model.eval()
    with torch.no_grad():
        fixed_loss = float(trainer.compute_loss(model, dict(fixed)))
    model.train()
    sizes: list[int] = []

    def counting_collator(features):  # noqa: ANN001, ANN202
        batch = collate(features)
        sizes.append(int(batch["input_ids"].numel()))  # padding-free: every token is real
        return batch

    trainer.data_collator = counting_collator
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "tokens": sum(sizes[args.warmup :]),
        "seconds": sum(record["times"]),
        "losses": losses,
        "fixed_loss": fixed_loss,
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model, vocab = build_model(args.model, dtype, args.device)
    n_params = sum(p.numel() for p in model.parameters())
    examples = make_examples(args.examples, vocab, min(args.max_len, args.batch_tokens), seed=1)
    ref = reference_loss(model, examples[:8], args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = {"naive": run_naive, "trl": run_trl, "instructkit": run_instructkit}[args.path]
    out = runner(model, examples, args)
    tok_s = out["tokens"] / out["seconds"]
    print(
        json.dumps(
            {
                "path": args.path,
                "tok_per_s": tok_s,
                "n_params": n_params,
                "ref_loss": ref,
                "fixed_loss": out["fixed_loss"],
                "first_loss": out["losses"][0],
                "last_loss": out["losses"][-1],
                "peak_gb": peak_memory_gb(args.device),
                "tokens": out["tokens"],
                "seconds": out["seconds"],
            }
        )
    )


def mfu(tok_s: float, n_params: int, device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return 6 * n_params * tok_s / peak if peak else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--model", default="tiny-random-llama")
    p.add_argument("--batch-tokens", type=int, default=2048)
    p.add_argument("--max-len", type=int, default=1024)
    p.add_argument("--examples", type=int, default=400)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--paths", default="naive,trl,instructkit")
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="/tmp/ik-bench-trl", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.path:
        return child(args)
    results = []
    for path in args.paths.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--path", path]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        if out.returncode != 0:
            print(f"{path}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"\nmodel={args.model} device={args.device} batch_tokens={args.batch_tokens} "
        f"steps={args.steps} (after {args.warmup} warm-up)"
    )
    print(
        f"{'path':<12}{'tok/s':>10}{'MFU':>8}{'peak GB':>9}{'ref loss':>10}{'batch loss':>11}"
        f"{'1st step':>10}{'last step':>10}"
    )
    for r in results:
        m = mfu(r["tok_per_s"], r["n_params"], args.device)
        print(
            f"{r['path']:<12}{r['tok_per_s']:>10.0f}{(f'{m:.1%}' if m else 'n/a'):>8}"
            f"{r['peak_gb']:>9.2f}{r['ref_loss']:>10.4f}{r['fixed_loss']:>11.4f}"
            f"{r['first_loss']:>10.4f}"
            f"{r['last_loss']:>10.4f}"
        )
    by = {r["path"]: r for r in results}
    if "trl" in by and "instructkit" in by:
        print(f"instructkit / trl = {by['instructkit']['tok_per_s'] / by['trl']['tok_per_s']:.2f}x")
    tol = 2e-2 if args.device == "cuda" else 1e-4  # bf16 on GPU, fp32 on CPU
    for r in results:
        ok = abs(r["fixed_loss"] - r["ref_loss"]) <= tol * abs(r["ref_loss"])
        print(
            f"{r['path']}: loss on the fixed batch {'matches' if ok else 'DIFFERS FROM'} "
            f"the per-example reference (rel. tol {tol})"
        )


if __name__ == "__main__":
    main()
