"""OpenAI's request and response schema for ``instructkit serve``: pydantic models and builders.

The server reads a body, then::

    body = parse_body(raw, ChatBody)          # RequestError (400) naming the bad field
    request = body.chat_request()              # a ChatRequest for any LM
    chat_response(completion, "model-name")    # the chat.completion object

Validation follows OpenAI's: numbers must be JSON numbers (``"0.5"`` and ``true`` are refused),
an unknown field is ignored (``user``, ``metadata``, ...), and a feature that would change the
answer but is not implemented here (tools, logprobs, penalties, JSON mode, ``echo``) is refused
with 400 rather than silently ignored. Every error is ``{"error": {"message", "type", "param",
"code"}}`` (:class:`RequestError`). Streaming chunks follow OpenAI's ``chat.completion.chunk``
and ``text_completion`` chunk objects.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    field_validator,
)

from instructkit.lm.base import ChatRequest, Completion

__all__ = [
    "ChatBody",
    "CompletionBody",
    "RequestError",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "new_id",
    "parse_body",
    "parse_chat_request",
    "usage",
]

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 1_000_000  # more would overflow generation settings, not just run long
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class RequestError(Exception):
    """An HTTP error answered in OpenAI's error schema."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code = param, code

    def body(self) -> dict[str, Any]:
        err = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": err}


def _unsupported(param: str, message: str) -> RequestError:
    return RequestError(400, f"'{param}' {message}", param=param, code="unsupported")


# ---------------------------------------------------------------- request bodies

Number = Annotated[float, Strict()]
Integer = Annotated[int, Strict()]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, ...
    role: Literal["system", "developer", "user", "assistant"]
    content: Any

    @field_validator("content")
    @classmethod
    def _text(cls, value: Any) -> str:
        """A string, or a list of ``{"type": "text", "text": ...}`` parts (joined by newlines)."""
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            texts = [
                p.get("text") if isinstance(p, dict) and p.get("type") == "text" else None
                for p in value
            ]
            if all(isinstance(t, str) for t in texts):
                return "\n".join(str(t) for t in texts)
        raise ValueError('expected a string or a list of {"type": "text", "text": ...} parts')


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class _Body(BaseModel):
    """What chat and text completions share: model, sampling, stopping, streaming."""

    model_config = ConfigDict(extra="ignore")
    model: Annotated[str, Strict()] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0  # OpenAI's default
    top_p: Annotated[Number, Field(ge=0, le=1)] = 1.0
    max_tokens: Annotated[Integer, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    n: Annotated[Integer, Field(ge=1, le=128)] = 1
    stop: Any = None
    seed: Integer | None = None
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    logprobs: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,) if value else ()
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return tuple(s for s in value if s)
        raise ValueError("expected a string or a list of strings")

    def refuse_unsupported(self) -> None:
        """Raise 400 for features that would change the answer but are not implemented."""
        if self.logprobs:
            raise _unsupported("logprobs", "is not supported.")
        for key in ("presence_penalty", "frequency_penalty"):
            if getattr(self, key):
                raise _unsupported(key, "is not supported (only 0).")

    def sampling(self, max_tokens: int | None) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens or max_tokens or DEFAULT_MAX_TOKENS,
            "n": self.n,
            "stop": self.stop,
            "seed": self.seed,
        }

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatBody(_Body):
    """A ``POST /v1/chat/completions`` body."""

    messages: Annotated[list[_Message], Field(min_length=1)]
    max_completion_tokens: Annotated[Integer, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    tools: Any = None
    functions: Any = None
    response_format: Any = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for key in ("tools", "functions"):
            if getattr(self, key):
                raise _unsupported(key, "is not supported.")
        fmt = self.response_format
        if fmt and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
            raise _unsupported("response_format", "is not supported (only {'type': 'text'}).")

    def chat_request(self) -> ChatRequest:
        messages = [{"role": _ROLES[m.role], "content": m.content} for m in self.messages]
        return ChatRequest.from_messages(messages, **self.sampling(self.max_completion_tokens))


class CompletionBody(_Body):
    """A ``POST /v1/completions`` body: one prompt or a list of prompts (text, not token ids)."""

    prompt: Any
    echo: StrictBool = False
    suffix: Annotated[str, Strict()] | None = None
    best_of: Integer | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: Any) -> list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not isinstance(prompts, list) or not prompts:
            raise ValueError("expected a string or a non-empty list of strings")
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("expected strings (token-id prompts are not supported)")
        if not all(prompts):
            raise ValueError("a prompt must not be empty")
        return prompts

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.echo:
            raise _unsupported("echo", "is not supported.")
        if self.suffix:
            raise _unsupported("suffix", "is not supported.")
        if self.best_of not in (None, 1, self.n):
            raise _unsupported("best_of", "is not supported (only equal to n).")

    def chat_requests(self) -> list[ChatRequest]:
        """One request per prompt; the prompt is the (only) user message, sent raw."""
        prompts: list[str] = self.prompt
        return [
            ChatRequest.from_messages([{"role": "user", "content": p}], **self.sampling(None))
            for p in prompts
        ]


Body = TypeVar("Body", bound=_Body)


def parse_body(raw: bytes, kind: type[Body]) -> Body:
    """Validate a request body; raise :class:`RequestError` (400) naming the first bad field."""
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}.", code="invalid_json") from e
    if not isinstance(data, dict):
        raise RequestError(400, "the request body must be a JSON object.", code="invalid_json")
    try:
        body = kind.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e) from e
    body.refuse_unsupported()
    return body


def _validation_error(e: ValidationError) -> RequestError:
    first = e.errors(include_url=False)[0]
    param = _param(first["loc"])
    if first["type"] == "missing":
        return RequestError(
            400, f"'{param}' is required.", param=param, code="missing_required_parameter"
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    got = first.get("input")
    shown = json.dumps(got)[:80] if _jsonable(got) else type(got).__name__
    code = "invalid_type" if first["type"].endswith("_type") else "invalid_value"
    return RequestError(400, f"'{param}': {message} (got {shown}).", param=param, code=code)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _param(loc: tuple[int | str, ...]) -> str:
    """``("messages", 0, "role")`` -> ``"messages[0].role"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def parse_chat_request(body: Any, served: str) -> ChatRequest:
    """A chat request from a decoded JSON body, for a server that serves the model ``served``.

    Defaults follow OpenAI (``temperature`` 1, ``top_p`` 1, ``n`` 1) except ``max_tokens``: 256.
    """
    parsed = parse_body(json.dumps(body).encode(), ChatBody)
    if parsed.model is not None and parsed.model != served:
        raise RequestError(
            404,
            f"the model '{parsed.model}' is not served here; this server serves '{served}'.",
            param="model",
            code="model_not_found",
        )
    return parsed.chat_request()


# ---------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _reason(completion: Completion, i: int) -> str:
    reasons = completion.finish_reasons or []
    return reasons[i] if i < len(reasons) else "stop"


def chat_response(completion: Completion, model: str) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object for one :class:`Completion`."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": _reason(completion, i),
        }
        for i, text in enumerate(completion.texts)
    ]
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(completion.prompt_tokens, completion.completion_tokens),
    }


def completion_response(completions: list[Completion], model: str) -> dict[str, Any]:
    """The OpenAI ``text_completion`` object: the choices of prompt ``k`` are ``k*n .. k*n+n-1``."""
    choices = [
        {"index": len(c.texts) * k + i, "text": t, "logprobs": None, "finish_reason": _reason(c, i)}
        for k, c in enumerate(completions)
        for i, t in enumerate(c.texts)
    ]
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(prompt_tokens, sum(c.completion_tokens for c in completions)),
    }


def chat_chunk(
    id: str, model: str, index: int, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk``: a piece of choice ``index`` (or its finish reason)."""
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def completion_chunk(
    id: str, model: str, index: int, text: str, finish_reason: str | None = None
) -> dict[str, Any]:
    """One streamed ``text_completion`` object: a piece of choice ``index``."""
    choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
