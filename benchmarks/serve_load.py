"""Load test of ``instructkit serve`` on the embedded model, on loopback, with the openai client.

  OMP_NUM_THREADS=2 python benchmarks/serve_load.py --concurrency 1,8,32 --requests 8,32,32 \\
      --max-tokens 32 --out out/serve_load.json

Starts ``instructkit serve MODEL`` (default: the embedded SmolLM2) as a subprocess on a free
127.0.0.1 port, then for each concurrency level C fires ``--requests`` short chat requests (one
count, or one per level; greedy, ``max_tokens`` each, streamed with ``include_usage``) from C
concurrent clients of the official ``openai`` async client. Per level it prints requests/s and
completion tokens/s (over the level's wall time), p50/p99 latency (request sent -> last chunk)
and p50/p99 time to first token (request sent -> first content chunk), nearest-rank. A warm-up
request runs first. The loop is bounded: ``--requests`` per level, each request bounded by
``--timeout`` seconds. Writes the table as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

TOPICS = [
    "a robot",
    "the sea",
    "a library",
    "winter",
    "a bicycle",
    "the moon",
    "a market",
    "a train",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, port: int, max_batch: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "instructkit", "serve", model, "--port", str(port)]
    command += ["--max-batch", str(max_batch), "--name", "bench"]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not become healthy")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def one(client: Any, i: int, max_tokens: int) -> dict[str, float]:
    """One streamed request: latency, time to first token, completion tokens."""
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = await client.chat.completions.create(
        model="bench",
        messages=[{"role": "user", "content": f"Write a short story about {TOPICS[i % 8]}."}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    latency = time.perf_counter() - start
    return {"latency": latency, "ttft": latency if first is None else first, "tokens": tokens}


async def level(
    base_url: str, concurrency: int, n: int, max_tokens: int, timeout: float
) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", timeout=timeout, max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def gated(i: int) -> dict[str, float] | None:
        async with gate:
            try:
                return await one(client, i, max_tokens)
            except openai.OpenAIError as e:
                print(f"  request {i} failed: {e}", flush=True)
                return None

    start = time.perf_counter()
    results = await asyncio.gather(*(gated(i) for i in range(n)))
    seconds = time.perf_counter() - start
    await client.close()
    done = [r for r in results if r is not None]
    latencies, ttfts = [r["latency"] for r in done], [r["ttft"] for r in done]
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": n - len(done),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(done) / seconds, 2),
        "tokens_per_s": round(sum(r["tokens"] for r in done) / seconds, 1),
        "latency_p50_s": round(percentile(latencies, 50), 2) if done else None,
        "latency_p99_s": round(percentile(latencies, 99), 2) if done else None,
        "ttft_p50_s": round(percentile(ttfts, 50), 2) if done else None,
        "ttft_p99_s": round(percentile(ttfts, 99), 2) if done else None,
    }


def main() -> None:
    from instructkit.models import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument(
        "--requests", default="32", help="requests per level: one number, or one per level"
    )
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--timeout", type=float, default=300, help="seconds per request")
    p.add_argument("--out", default="out/serve_load.json")
    args = p.parse_args()
    port = free_port()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    log = Path(args.out).with_suffix(".server.log")
    server = start_server(args.model, port, args.max_batch, log)
    rows = []
    try:
        wait_healthy(port, server)
        base_url = f"http://127.0.0.1:{port}/v1"
        asyncio.run(level(base_url, 1, 1, 8, args.timeout))  # warm-up
        levels = [int(c) for c in args.concurrency.split(",")]
        counts = [int(n) for n in args.requests.split(",")]
        counts = counts * len(levels) if len(counts) == 1 else counts
        for c, n in zip(levels, counts, strict=True):
            rows.append(asyncio.run(level(base_url, c, n, args.max_tokens, args.timeout)))
            print(json.dumps(rows[-1]), flush=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            health = json.loads(r.read())
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    report = {
        "model": args.model,
        "max_tokens": args.max_tokens,
        "max_batch": args.max_batch,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "server_batches": health["batches"],
        "levels": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    head = ("clients", "req/s", "tok/s", "p50 s", "p99 s", "TTFT p50", "TTFT p99", "errors")
    print("\n" + " ".join(f"{h:>9}" for h in head))
    for r in rows:
        keys = ("concurrency", "requests_per_s", "tokens_per_s", "latency_p50_s")
        keys += ("latency_p99_s", "ttft_p50_s", "ttft_p99_s", "errors")
        print(" ".join(f"{r[k]!s:>9}" for k in keys))


if __name__ == "__main__":
    main()
