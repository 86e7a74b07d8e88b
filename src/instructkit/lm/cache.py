"""A persistent SQLite request cache in front of any LM::

    lm = CachedLM(OpenAILM("gpt-4o-mini"), "runs/lm-cache.sqlite")
    lm.complete(requests)  # sends only the requests not answered before

Entries are keyed by :func:`~instructkit.lm.base.request_key` of the inner LM's ``name`` and the
request (messages and all parameters), and hold the :class:`~instructkit.lm.base.Completion` as
JSON. A re-run of a finished job therefore makes no calls at all, and a killed job resumes where
it stopped. The file uses SQLite's WAL mode, so several threads or processes can share it.

An inner LM with the :class:`~instructkit.lm.base.ScoresChoices` capability keeps it:
``choice_logprobs`` is forwarded and its answers cached too (in their own table, keyed by
:func:`~instructkit.lm.base.choice_key`); over an LM without it, it raises the ConfigError of
:func:`~instructkit.lm.base.require_choice_scores`. When the inner LM fails part-way and says
which completions did arrive (an exception's ``completed``, as OpenAILM does), those are stored
and ``completed`` is re-indexed to the caller's requests (cache hits included), so a caller
such as the judge can journal them too.

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
from instructkit.lm.base import (
    LM,
    ChatRequest,
    Completion,
    choice_key,
    request_key,
    require_choice_scores,
)

__all__ = ["CachedLM", "decode_completion", "encode_completion"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, completion TEXT NOT NULL, created REAL NOT NULL
)"""
_CHOICES_SCHEMA = """CREATE TABLE IF NOT EXISTS choice_logprobs (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, logprobs TEXT NOT NULL, created REAL NOT NULL
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
                results[i] = decode_completion(found[k], cached=True)
            elif k is None or k not in first:
                send.append(i)
                if k is not None:
                    first[k] = i
        self.hits += len(requests) - len(send)
        self.misses += len(send)
        try:
            fresh = self._complete_inner(requests, send, keys, progress)
        except Exception as e:
            done = getattr(e, "completed", None) or {}
            for j, c in done.items():
                results[send[j]] = c
            e.completed = _answered(results, keys, first)  # type: ignore[attr-defined]
            raise
        for i, c in zip(send, fresh, strict=True):
            results[i] = c
        for i, k in enumerate(keys):
            if results[i] is None and k is not None:  # a repeat of a request sent above
                results[i] = _copy(results[first[k]])
        return [c for c in results if c is not None]

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], prefix: str, choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """The inner LM's :meth:`~instructkit.lm.base.ScoresChoices.choice_logprobs`, cached."""
        scorer = require_choice_scores(self.lm)
        keys = [choice_key(self.name, r, prefix, choices) for r in requests]
        found = self._load(set(keys), table="choice_logprobs")
        first: dict[str, int] = {}  # key -> the index sent for it (repeats are sent once)
        for i, k in enumerate(keys):
            if k not in found:
                first.setdefault(k, i)
        send = list(first.values())
        self.hits += len(requests) - len(send)
        self.misses += len(send)
        if send:
            fresh = scorer.choice_logprobs([requests[i] for i in send], prefix, choices)
            if len(fresh) != len(send):
                raise LMError(f"LM '{self.name}' scored {len(fresh)} of {len(send)} requests.")
            rows = [(keys[i], json.dumps(lp)) for i, lp in zip(send, fresh, strict=True)]
            self._store_rows("choice_logprobs", rows)
            found.update(rows)
        return [json.loads(found[k]) for k in keys]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CachedLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

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

    def _load(self, keys: set[str], table: str = "completions") -> dict[str, str]:
        wanted, found = sorted(keys), dict[str, str]()
        column = _COLUMNS[table]
        with self._lock:
            for b in range(0, len(wanted), _CHUNK):
                chunk = wanted[b : b + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, {column} FROM {table} WHERE key IN ({marks})", chunk
                )
                found.update(rows.fetchall())
        return found

    def _store(self, items: list[tuple[str | None, Completion]]) -> None:
        rows = [(k, encode_completion(c)) for k, c in items if k is not None]
        self._store_rows("completions", rows)

    def _store_rows(self, table: str, items: list[tuple[str, str]]) -> None:
        rows = [(k, self.name, value, time.time()) for k, value in items]
        if not rows:
            return
        with self._lock, self._db:  # one transaction
            self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?)", rows)


_COLUMNS = {"completions": "completion", "choice_logprobs": "logprobs"}


def _answered(
    results: list[Completion | None], keys: list[str | None], first: dict[str, int]
) -> dict[int, Completion]:
    """Caller index -> completion for every request answered so far (repeats included)."""
    done = {i: c for i, c in enumerate(results) if c is not None}
    for i, k in enumerate(keys):
        if i not in done and k is not None and first.get(k) in done:
            done[i] = _copy(done[first[k]])
    return done


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by threads, serialized by CachedLM._lock.
        db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        db.execute(_CHOICES_SCHEMA)
        db.commit()
    except (OSError, sqlite3.Error) as e:
        raise LMError(
            f"cannot open the LM cache {path}: {e}.",
            fix="pass another cache path, or delete the file if it is not a cache.",
        ) from e
    return db


def encode_completion(c: Completion) -> str:
    """``c`` as JSON (without ``cached``): what the cache and journals store."""
    d = asdict(c)
    d.pop("cached")
    return json.dumps(d, ensure_ascii=False)


def decode_completion(text: str, *, cached: bool) -> Completion:
    """The completion :func:`encode_completion` wrote."""
    return Completion(**json.loads(text), cached=cached)


def _copy(c: Completion | None) -> Completion:
    assert c is not None
    return Completion(
        list(c.texts), c.prompt_tokens, c.completion_tokens, list(c.finish_reasons), c.cached
    )
