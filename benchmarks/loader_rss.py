"""Peak memory of `instructkit data validate` / `data convert` on a large file, vs. its size.

Generates Alpaca rows (instruction/input/output of a few hundred bytes) as JSONL, as a JSON
array and as Parquet, runs each command in a child process and reports the child's peak RSS
(``ru_maxrss`` from ``os.wait4``), its wall time and rows/s. The reference rows,
``ik.load_dataset`` (which returns every record as a Python object) and ``json.load`` of the
array, show what a reader that holds the rows needs; the streaming commands stay flat. The
generated files are deleted at the end.

    python benchmarks/loader_rss.py --gb 1.0            # ~2.1M rows, ~1 GB of JSONL
    python benchmarks/loader_rss.py --gb 0.05 --keep    # quick look

The files are generated in a child process: on Linux a child's ``ru_maxrss`` counts the RSS
its parent had when it forked, so the parent must stay small for the numbers to be the
commands' own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the model answers a question about data training loss token batch prompt response "
    "instruction example format reader writer stream memory file row column schema"
).split()


def alpaca_row(i: int, rng: random.Random) -> dict[str, object]:
    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    return {"instruction": text(12), "input": text(rng.randint(0, 20)), "output": text(50), "id": i}


def write_jsonl(path: Path, target_bytes: int) -> int:
    rng = random.Random(0)
    n = size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < target_bytes:
            chunk = "".join(json.dumps(alpaca_row(n + k, rng)) + "\n" for k in range(10_000))
            f.write(chunk)
            size += len(chunk.encode())
            n += 10_000
    return n


def write_json_array(src: Path, dst: Path) -> None:
    """The same rows as one JSON array (one element a line), written line by line."""
    with src.open(encoding="utf-8") as f, dst.open("w", encoding="utf-8") as out:
        out.write("[\n")
        for i, line in enumerate(f):
            out.write(("" if i == 0 else ",\n") + line.rstrip("\n"))
        out.write("\n]\n")


def write_parquet(src: Path, dst: Path) -> None:
    """The same rows as Parquet, written in batches by pyarrow (not by instructkit)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    reader = pj.open_json(src, read_options=pj.ReadOptions(block_size=1 << 24))
    with pq.ParquetWriter(dst, reader.schema) as w:
        for batch in reader:
            w.write_table(pa.Table.from_batches([batch]))


def run_child(args: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of ``instructkit ARGS`` (or, when ARGS starts with
    ``-c``, of that Python code) in a child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *(args if args[0] == "-c" else ["-m", "instructkit", *args])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(out, file=sys.stderr)
    return usage.ru_maxrss / 1024, seconds, code  # ru_maxrss is in KiB on Linux


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def generate(tmp: Path, gb: float) -> None:
    """Run in a child process, so that the parent's RSS (which a forked child's ru_maxrss
    starts from on Linux) stays small."""
    t = time.perf_counter()
    n = write_jsonl(tmp / "alpaca.jsonl", int(gb * 1e9))
    write_parquet(tmp / "alpaca.jsonl", tmp / "alpaca.parquet")
    write_json_array(tmp / "alpaca.jsonl", tmp / "alpaca.json")
    print(f"generated {n} rows in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="JSONL size to generate, in GB")
    ap.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--reuse", action="store_true", help="reuse the files already in --dir")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="ik-loader-rss-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.generate_only:
        generate(tmp, args.gb)
        return
    try:
        jsonl, parquet, array = tmp / "alpaca.jsonl", tmp / "alpaca.parquet", tmp / "alpaca.json"
        if not (args.reuse and jsonl.exists() and parquet.exists() and array.exists()):
            cmd = [sys.executable, __file__, "--generate-only", "--dir", str(tmp)]
            subprocess.run([*cmd, "--gb", str(args.gb)], check=True)
        n = count_lines(jsonl)
        base, _, _ = run_child(["--version"])
        cases = [
            ("data validate", jsonl, ["data", "validate", str(jsonl)]),
            ("data validate", parquet, ["data", "validate", str(parquet)]),
            ("data validate (streamed array)", array, ["data", "validate", str(array)]),
            ("reference: json.load of the array (held whole)", array,
             ["-c", f"import json; json.load(open({str(array)!r}))"]),
            ("data convert -> parquet", jsonl,
             ["data", "convert", str(jsonl), "-o", str(tmp / "o.parquet"), "--to", "messages"]),
            ("data convert -> jsonl", parquet,
             ["data", "convert", str(parquet), "-o", str(tmp / "o.jsonl"), "--to", "sharegpt"]),
            ("reference: ik.load_dataset (every record held)", jsonl,
             ["-c", f"import instructkit as ik; ik.load_dataset({str(jsonl)!r})"]),
        ]  # fmt: skip
        print(f"rows: {n}; `instructkit --version` alone: peak RSS {base:.0f} MB\n")
        print("| command | input | input size (MB) | peak RSS (MB) | RSS / size | s | rows/s |")
        print("|---|---|---|---|---|---|---|", flush=True)
        for name, src, cmd in cases:
            rss, seconds, code = run_child(cmd)
            size = src.stat().st_size / 1e6
            status = "" if code == 0 else f" (exit {code})"
            print(
                f"| {name}{status} | {src.suffix[1:]} | {size:.0f} | {rss:.0f} | "
                f"{rss / size:.2f} | {seconds:.1f} | {n / seconds:,.0f} |",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
