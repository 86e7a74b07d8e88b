"""A scripted LM for tests and dry runs: answers come from a function or a list, no model.

``ScriptedLM(lambda request: "text")`` answers every request with the function's result;
``ScriptedLM(["a", "b"])`` answers in turn (cycling). Every request is recorded in ``calls``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from instructkit.lm.base import ChatRequest, Completion

__all__ = ["ScriptedLM"]


class ScriptedLM:
    """Deterministic fake LM implementing the :class:`~instructkit.lm.base.LM` protocol."""

    def __init__(
        self, script: Callable[[ChatRequest], str] | Iterable[str], name: str = "scripted"
    ) -> None:
        self.name = name
        self.calls: list[ChatRequest] = []
        if callable(script):
            self._answer = script
        else:
            answers = itertools.cycle(list(script))
            self._answer = lambda _request: next(answers)

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        out = []
        for r in requests:
            self.calls.append(r)
            texts = [self._answer(r) for _ in range(r.n)]
            out.append(
                Completion(
                    texts,
                    prompt_tokens=sum(len(c.split()) for _, c in r.messages),
                    completion_tokens=sum(len(t.split()) for t in texts),
                    finish_reasons=["stop"] * r.n,
                )
            )
        return out
