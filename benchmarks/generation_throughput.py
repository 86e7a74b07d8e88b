"""Generation throughput of each LM backend on the embedded model (completion tokens per second).

  python benchmarks/generation_throughput.py --backends local,local-bf16,serve --batch-sizes 1,8,32

Backends: ``local`` (transformers, fp32), ``local-bf16`` (transformers, bfloat16 weights),
``llamacpp`` (llama-cpp-python on the GGUF, when installed), ``serve`` (the ``openai`` backend
against ``instructkit serve`` on loopback, with the server's dynamic batching). Every request
asks for up to ``--max-tokens`` new tokens of a long story (greedy); the figure is completion
tokens (from each backend's usage) over wall time, single stream (batch 1) and batched.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

TOPICS = [
    "a robot",
    "the sea",
    "a library",
    "winter",
    "a bicycle",
    "the moon",
    "a market",
    "an old clock",
    "a garden",
    "a train",
    "a violin",
    "the desert",
]


def requests(n: int, max_tokens: int) -> list[Any]:
    from instructkit.lm.base import ChatRequest

    return [
        ChatRequest.from_messages(
            [
                {
                    "role": "user",
                    "content": f"Write a long story about {TOPICS[i % len(TOPICS)]} (number {i}).",
                }
            ],
            max_tokens=max_tokens,
            temperature=0.0,
        )
        for i in range(n)
    ]


def measure(lm: Any, reqs: list[Any]) -> tuple[float, int, float]:
    start = time.perf_counter()
    out = lm.complete(reqs)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for c in out)
    return tokens / seconds, tokens, seconds


def build(backend: str, batch: int) -> tuple[Any, Any]:
    """(lm, cleanup) for a backend at a batch size."""
    import torch

    if backend in ("local", "local-bf16"):
        from instructkit.lm.local import LocalLM

        dtype = torch.bfloat16 if backend == "local-bf16" else torch.float32
        return LocalLM.load(batch_size=batch, dtype=dtype), None
    if backend == "llamacpp":
        from instructkit.lm.llamacpp import LlamaCppLM

        return LlamaCppLM(), None
    if backend == "serve":
        from instructkit.lm.local import LocalLM
        from instructkit.lm.openai import OpenAILM
        from instructkit.lm.serve import start_server

        handle = start_server(
            LocalLM.load(batch_size=batch), port=0, max_batch=batch, model_name="smollm2"
        )
        return OpenAILM("smollm2", base_url=handle.base_url, concurrency=batch), handle
    raise SystemExit(f"unknown backend {backend}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backends", default="local,local-bf16,serve")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--single-requests", type=int, default=4)
    p.add_argument("--batched-requests", type=int, default=64)
    args = p.parse_args()
    rows = []
    for backend in args.backends.split(","):
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            lm, handle = build(backend, batch)
            n = args.single_requests if batch == 1 else args.batched_requests
            measure(lm, requests(min(2, n), 8))  # warm-up
            tok_s, tokens, seconds = measure(lm, requests(n, args.max_tokens))
            rows.append((backend, batch, n, tokens, seconds, tok_s))
            print(
                f"{backend:<11} batch {batch:>3}: {tok_s:7.1f} tok/s "
                f"({tokens} tokens in {seconds:.1f} s)",
                flush=True,
            )
            if handle is not None:
                sizes = handle.worker.batch_sizes
                print(f"  server batches: {len(sizes)}, mean size {sum(sizes) / len(sizes):.1f}")
                handle.stop()
    print(f"\n{'backend':<12}{'batch':>6}{'requests':>9}{'tokens':>8}{'seconds':>9}{'tok/s':>8}")
    for r in rows:
        print(f"{r[0]:<12}{r[1]:>6}{r[2]:>9}{r[3]:>8}{r[4]:>9.1f}{r[5]:>8.1f}")


if __name__ == "__main__":
    main()
