"""A persistent SQLite request cache in front of any LM::

    lm = CachedLM(OpenAILM("gpt-4o-mini"), "runs/lm-cache.sqlite")
    lm.complete(requests)  # sends only the requests not answered before

Entries are keyed by :func:`~instructkit.lm.base.request_key` of the inner LM's ``name`` and the
request (messages and all parameters), and hold the :class:`~instructkit.lm.base.Completion` as
JSON. A re-run of a finished job therefore makes no calls at all, and a killed job resumes where
it stopped. The file uses SQLite's WAL mode, so several threads or processes can share it.

Only reproducible requests are cached by default: greedy ones (``temperature == 0``) and seeded
ones. A sampled request without a seed asks for a fresh random draw each time; answering it from
the cache would freeze that randomness (every re-run, and every repeat of the request inside a
job, would get the same sample). Pass ``cache_sampled=True`` to cache those too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from instructkit.errors import LMError
from instructkit.lm.base import LM, ChatRequest, Completion, request_key

__all__ = ["CachedLM"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, completion TEXT NOT NULL, created REAL NOT NULL
)"""
_CHUNK = 500  # keys per SELECT, under SQLite's limit on bound variables


class CachedLM:
    """Wraps ``lm``; answers repeated requests from the SQLite file at ``path``.

    ``misses`` counts the requests sent to ``lm``; ``hits`` the others (answered from the file,
    or repeats of a request in the same batch, which is sent once).
    """

    def __init__(self, lm: LM, path: str | Path, *, cache_sampled: bool = False) -> None:
        self.lm, self.path, self.cache_sampled = lm, Path(path), cache_sampled
        self.name = lm.name
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._db = _open(self.path)

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        """One completion per request, in order; hits carry ``cached=True``."""
        keys = [request_key(self.name, r) if self._cacheable(r) else None for r in requests]
        found = self._load({k for k in keys if k is not None})
        results: list[Completion | None] = [None] * len(requests)
        send: list[int] = []  # indices of the requests the inner LM must answer
        first: dict[str, int] = {}  # key -> the index sent for it (repeats are answered once)
        for i, k in enumerate(keys):
            if k is not None and k in found:
                results[i] = _decode(found[k], cached=True)
            elif k is None or k not in first:
                send.append(i)
                if k is not None:
                    first[k] = i
        self.hits += len(requests) - len(send)
        self.misses += len(send)
        for i, c in zip(send, self._complete_inner(requests, send, keys, progress), strict=True):
            results[i] = c
        for i, k in enumerate(keys):
            if results[i] is None and k is not None:  # a repeat of a request sent above
                results[i] = _copy(results[first[k]])
        return [c for c in results if c is not None]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CachedLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def _cacheable(self, r: ChatRequest) -> bool:
        return r.temperature == 0 or r.seed is not None or self.cache_sampled

    def _complete_inner(
        self,
        requests: Sequence[ChatRequest],
        send: list[int],
        keys: list[str | None],
        progress: bool,
    ) -> list[Completion]:
        if not send:
            return []
        try:
            fresh = self.lm.complete([requests[i] for i in send], progress=progress)
        except Exception as e:
            # Backends that failed part-way may say what did arrive (OpenAILM does): keep it.
            done = getattr(e, "completed", None) or {}
            self._store([(keys[send[j]], c) for j, c in done.items() if keys[send[j]]])
            raise
        if len(fresh) != len(send):
            raise LMError(
                f"LM '{self.name}' returned {len(fresh)} completions for {len(send)} requests."
            )
        self._store([(keys[i], c) for i, c in zip(send, fresh, strict=True) if keys[i] is not None])
        return fresh

    def _load(self, keys: set[str]) -> dict[str, str]:
        wanted, found = sorted(keys), dict[str, str]()
        with self._lock:
            for b in range(0, len(wanted), _CHUNK):
                chunk = wanted[b : b + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, completion FROM completions WHERE key IN ({marks})", chunk
                )
                found.update(rows.fetchall())
        return found

    def _store(self, items: list[tuple[str | None, Completion]]) -> None:
        rows = [(k, self.name, _encode(c), time.time()) for k, c in items if k is not None]
        if not rows:
            return
        with self._lock, self._db:  # one transaction
            self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?)", rows)


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by threads, serialized by CachedLM._lock.
        db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        db.commit()
    except (OSError, sqlite3.Error) as e:
        raise LMError(
            f"cannot open the LM cache {path}: {e}.",
            fix="pass another cache path, or delete the file if it is not a cache.",
        ) from e
    return db


def _encode(c: Completion) -> str:
    d = asdict(c)
    d.pop("cached")
    return json.dumps(d, ensure_ascii=False)


def _decode(text: str, *, cached: bool) -> Completion:
    return Completion(**json.loads(text), cached=cached)


def _copy(c: Completion | None) -> Completion:
    assert c is not None
    return Completion(
        list(c.texts), c.prompt_tokens, c.completion_tokens, list(c.finish_reasons), c.cached
    )
