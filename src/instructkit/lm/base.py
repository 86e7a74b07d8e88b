"""The LM contract shared by generation, judging and instruction optimization.

An LM takes a batch of :class:`ChatRequest` and returns one :class:`Completion` per request,
in order. Backends (``local``, ``openai``, ``llamacpp``) implement :class:`LM`; wrappers such as
the SQLite request cache compose around any of them. Build one from a CLI spec with
:func:`instructkit.lm.build_lm`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ChatRequest", "Completion", "LM", "request_key"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request (OpenAI semantics)."""

    messages: tuple[tuple[str, str], ...]  # ((role, content), ...)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def from_messages(cls, messages: Sequence[dict[str, str]], **params: Any) -> ChatRequest:
        """Build from OpenAI-style ``[{"role", "content"}]`` dicts."""
        stop = params.pop("stop", ()) or ()
        return cls(
            tuple((m["role"], m["content"]) for m in messages),
            stop=tuple([stop] if isinstance(stop, str) else stop),
            **params,
        )

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def params(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("messages")
        d["stop"] = list(self.stop)
        return d


def request_key(model: str, request: ChatRequest) -> str:
    """Stable cache key of (model, messages, parameters)."""
    payload = {"model": model, "messages": request.chat(), **request.params()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class Completion:
    """The ``n`` generated texts of one request, with token usage."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: list[str] = field(default_factory=list)
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


@runtime_checkable
class LM(Protocol):
    """Anything that completes chat requests in batches."""

    name: str

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]: ...
