"""The LM contract shared by generation, judging and instruction optimization.

An LM takes a batch of :class:`ChatRequest` and returns one :class:`Completion` per request,
in order. Backends (``local``, ``openai``, ``llamacpp``) implement :class:`LM`; wrappers such as
the SQLite request cache compose around any of them. Build one from a CLI spec with
:func:`instructkit.lm.build_lm`.

Optional capability: an LM that can also say how likely each of a few fixed answers is
(:class:`ScoresChoices`, implemented by the local backend and forwarded by the cache) lets a
judge score by probability instead of parsing generated text. :func:`require_choice_scores`
checks for it with an error that says what to use instead. Another (:class:`Abandonable`) lets
a server stop generating for a client that went away, stream text as it is generated, and
complete raw prompts (``/v1/completions``) without the chat template.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from instructkit.errors import ConfigError

__all__ = [
    "DEFAULT_BATCH",
    "ChatRequest",
    "Completion",
    "LM",
    "Abandonable",
    "ScoresChoices",
    "TextSink",
    "choice_key",
    "request_key",
    "require_choice_scores",
]

# Sequences generated together by local backends (LocalLM and `instructkit serve`): on 2 CPU
# cores the embedded model generates ~160 tok/s at 32 against ~83 at 8 (benchmarks/RESULTS.md);
# memory stays small for a 135M model.
DEFAULT_BATCH = 32


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


@runtime_checkable
class ScoresChoices(Protocol):
    """An LM that scores fixed answers: the optional capability behind probability judging.

    ``choice_logprobs`` returns, per request, the log-probability of each choice's full token
    sequence as the start of the assistant's answer, right after ``prefix`` (e.g. ``prefix=
    "Rating: [["``, ``choices=["1", ..., "10"]``). Values are exact sums of token
    log-probabilities (not normalized over the choices): a multi-token choice is not favoured
    or penalized by how it happens to be tokenized beyond what the model itself assigns.
    """

    name: str

    def choice_logprobs(
        self, requests: Sequence[ChatRequest], prefix: str, choices: Sequence[str]
    ) -> list[dict[str, float]]: ...


def choice_key(model: str, request: ChatRequest, prefix: str, choices: Sequence[str]) -> str:
    """Stable cache key of a :meth:`ScoresChoices.choice_logprobs` question."""
    payload = [request_key(model, request), prefix, list(choices)]
    return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()


def require_choice_scores(lm: object) -> ScoresChoices:
    """``lm`` as a :class:`ScoresChoices`, or a ConfigError saying what to use instead."""
    if not isinstance(lm, ScoresChoices):
        name = getattr(lm, "name", type(lm).__name__)
        raise ConfigError(
            f"the LM '{name}' cannot score answers by probability (it gives no "
            "log-probabilities of chosen answers).",
            fix='use scoring "text" (parse the generated verdict), or a local model '
            '(local or local:NAME_OR_PATH) for scoring "probabilities".',
        )
    return lm


# Receives a request's text as it is generated: (choice index, new text). Called from the thread
# that generates; the pieces of one choice concatenate to a prefix of its final text.
TextSink = Callable[[int, str], None]


@runtime_checkable
class Abandonable(Protocol):
    """An LM that serves clients: it stops for callers that went away and streams text.

    ``complete_abandonable`` is ``complete`` with one event per request: once a request's event
    is set, its generation stops at the next decode step (and a batch whose requests are all
    abandoned is not started); its completion then has finish reason ``"abandoned"``.
    ``on_text`` (one :data:`TextSink` or None per request) receives each request's text as it
    is generated, decode step by decode step. ``raw=True``: each request's last message is a
    plain prompt, tokenized as it is, without the chat template (``/v1/completions``).
    """

    def complete_abandonable(
        self,
        requests: Sequence[ChatRequest],
        abandoned: Sequence[threading.Event],
        on_text: Sequence[TextSink | None] | None = None,
        *,
        raw: bool = False,
    ) -> list[Completion]: ...
