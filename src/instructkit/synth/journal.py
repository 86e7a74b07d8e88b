"""Resumable jobs: append-only JSONL output plus an atomically replaced state file.

A long job (generation, evolution, judging) writes each finished unit of work as one JSON line
to ``out`` (flushed and fsynced, so a kill loses at most the unit in flight) and keeps its
progress counters in ``out.state.json``. On restart, :class:`Journal` reads back what is done,
drops a torn last line left by a kill, and the job continues: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from instructkit.data.io import write_atomic

__all__ = ["Journal"]


class Journal:
    """Append-only record log with a state dict; see the module docstring."""

    def __init__(self, out: str | Path, *, fresh: bool = False) -> None:
        self.out = Path(out)
        self.state_path = self.out.with_name(self.out.name + ".state.json")
        if fresh:
            for p in (self.out, self.state_path):
                p.unlink(missing_ok=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = self._read()
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text("utf-8")) if self.state_path.exists() else {}
        )

    def _read(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        raw = self.out.read_bytes()
        lines = raw.split(b"\n")
        good: list[dict[str, Any]] = []
        for line in lines[:-1]:  # complete lines end with "\n"
            if line.strip():
                good.append(json.loads(line))
        if lines[-1].strip():  # a torn last line from a kill: drop it from the file too
            try:
                good.append(json.loads(lines[-1]))
            except json.JSONDecodeError:
                pass
            with self.out.open("wb") as f:
                f.write(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in good))
        return good

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append finished records durably."""
        batch = list(records)
        if not batch:
            return
        with self.out.open("a", encoding="utf-8") as f:
            for r in batch:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.extend(batch)

    def save_state(self, **state: Any) -> None:
        """Merge ``state`` into the state file (atomic replace)."""
        self.state.update(state)
        write_atomic(self.state_path, [json.dumps(self.state, indent=1)])
