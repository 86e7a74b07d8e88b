"""An LM whose replies are journaled in a :class:`~instructkit.jobs.Job`, so that a killed job
that makes the same requests again gets them answered from the journal instead of the model::

    job = Job("out/history.jsonl", fp, journals={"calls": "out/calls.jsonl"})
    lm = ReplayLM(OpenAILM("gpt-4o-mini"), job, "calls")
    lm.complete(requests)      # the n-th occurrence of a request: the n-th reply journaled for
                               # it, else the model's (journaled as soon as it arrives)

This is how code that is not ours resumes: DSPy's optimizers keep no journal, but re-run with the
same seed they ask the same questions in the same way, and every reply they got before the kill is
given back without a call. Unlike :class:`~instructkit.lm.cache.CachedLM`, a request asked twice
in one run is sent twice (the second occurrence is a fresh draw when sampling), and replayed
replies are matched by occurrence: the k-th ask of a request gets the k-th reply. ``tag`` keeps
the replies of several models in one journal apart. ``sent`` and ``replayed`` count requests;
``failure`` keeps the first error the model raised (a caller that swallows errors, as DSPy's
evaluations do, can raise it afterwards).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from instructkit.errors import LMError
from instructkit.jobs import Job
from instructkit.lm.base import ChatRequest, Completion, request_key
from instructkit.lm.cache import decode_completion, encode_completion

__all__ = ["ReplayLM"]


class ReplayLM:
    """Wraps ``lm``; its replies go to ``job``'s journal ``journal`` (see the module doc).

    ``on_reply(n)`` is called with the number of requests answered by each ``complete`` (a
    progress bar's ``update``)."""

    def __init__(
        self,
        lm: Any,
        job: Job,
        journal: str,
        *,
        tag: str = "",
        on_reply: Callable[[int], None] | None = None,
    ) -> None:
        self.lm, self.job, self.journal, self.tag, self.on_reply = lm, job, journal, tag, on_reply
        self.name = lm.name
        self.sent = self.replayed = 0
        self.failure: BaseException | None = None
        self._saved: dict[str, list[str]] = {}
        for row in job.records_of(journal):
            if row.get("tag") == tag:
                self._saved.setdefault(str(row["key"]), []).append(str(row["completion"]))
        self._seen: Counter[str] = Counter()
        self._lock, self._write = threading.Lock(), threading.Lock()

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        """One completion per request, in order; replayed ones carry ``cached=True``."""
        keys = [request_key(self.name, r) for r in requests]
        results: list[Completion | None] = [None] * len(requests)
        send: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                occurrence, saved = self._seen[key], self._saved.get(key, [])
                self._seen[key] += 1
                if occurrence < len(saved):
                    results[i] = decode_completion(saved[occurrence], cached=True)
                else:
                    send.append(i)
            self.replayed += len(requests) - len(send)
            self.sent += len(send)
        for i, completion in zip(send, self._send(requests, keys, send, progress), strict=True):
            results[i] = completion
        if self.on_reply is not None:
            self.on_reply(len(requests))
        return [c for c in results if c is not None]

    def _send(
        self, requests: Sequence[ChatRequest], keys: list[str], send: list[int], progress: bool
    ) -> list[Completion]:
        if not send:
            return []
        try:
            fresh = self.lm.complete([requests[i] for i in send], progress=progress)
        except BaseException as e:  # keep what did arrive (OpenAILM says so in ``completed``)
            self.failure = self.failure or e
            done = getattr(e, "completed", None) or {}
            self._journal([(keys[send[j]], c) for j, c in sorted(done.items())])
            raise
        if len(fresh) != len(send):
            raise LMError(f"LM '{self.name}' returned {len(fresh)} completions for {len(send)}.")
        self._journal([(keys[i], c) for i, c in zip(send, fresh, strict=True)])
        return list(fresh)

    def _journal(self, replies: list[tuple[str, Completion]]) -> None:
        rows = [{"tag": self.tag, "key": k, "completion": encode_completion(c)} for k, c in replies]
        if rows:
            with self._write:  # one writer at a time: lines never interleave
                self.job.append(rows, to=self.journal)
