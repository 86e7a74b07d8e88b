"""Any OpenAI-compatible chat endpoint as an LM: OpenAI, vLLM, llama.cpp server, Ollama, TGI, or
``instructkit serve``::

    lm = OpenAILM("gpt-4o-mini")                                      # $OPENAI_API_KEY
    lm = OpenAILM("smollm2-135m-instruct", base_url="http://localhost:8000/v1")

``complete`` sends up to ``concurrency`` requests at a time (httpx, asyncio) and returns the
completions in input order. It runs its own event loop, so it works from plain code, from
threads, and from code that already runs a loop (there it runs the loop on a helper thread).

Faults:

- ``timeout`` (default 600 s) bounds the wait for one answer. A local server on CPU that
  generates a batch of long answers (an LLM judge's, say) takes minutes; a shorter timeout only
  makes the client give up and resend work the server is already doing.
- 429, 408, 5xx and timeouts are retried up to ``max_retries`` times with exponential backoff and
  full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015), honouring
  ``Retry-After``.
- A connection that fails before the server has ever answered fails fast (a wrong URL or a server
  that is not running): a few quick tries, then an :class:`~instructkit.errors.LMError`.
- Once the server has answered, connection errors are retried for at least ``retry_window``
  seconds, so a job survives a server restart.
- 401/403 (auth), 404 (URL or model) and other 4xx fail at once with an error that says what to fix.
- Whatever ends ``complete`` early (an LMError, Ctrl+C) carries the completions that did arrive
  as ``completed`` (``{index: Completion}``), so a cache or a journal can keep them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm.auto import tqdm

from instructkit.errors import LMError
from instructkit.lm.base import ChatRequest, Completion

__all__ = ["Backoff", "OpenAILM", "DEFAULT_BASE_URL", "DEFAULT_TIMEOUT"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 600.0  # seconds for one answer: long enough for a slow local server
_RETRY_STATUSES = {408, 429}  # and every 5xx


@dataclass(frozen=True)
class Backoff:
    """Delays between tries: full jitter, ``uniform(0, min(cap, base * 2**attempt))`` seconds.

    ``first_contact`` is the fixed delay between the quick tries made while a server has never
    answered (``first_contact_tries`` tries in all).
    """

    base: float = 0.5
    cap: float = 10.0
    first_contact: float = 0.25
    first_contact_tries: int = 3

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * 2**attempt))


class _Retry(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if any."""

    def __init__(self, reason: str, *, connection: bool = False, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.connection, self.wait = reason, connection, wait


class OpenAILM:
    """Chat completions from an OpenAI-compatible server; see the module docstring for faults.

    ``base_url`` defaults to ``$OPENAI_BASE_URL``, else the OpenAI API; ``api_key`` to
    ``$OPENAI_API_KEY`` (local servers need none). ``name`` (default ``openai:MODEL``) is the
    identity used in cache keys. ``concurrency``, ``max_retries``, ``timeout`` and
    ``retry_window`` are also :func:`~instructkit.lm.build_lm` keyword arguments. ``retries``
    counts every retry made, for logs and tests.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = DEFAULT_TIMEOUT,
        retry_window: float = 60.0,
        backoff: Backoff | None = None,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise LMError(f"concurrency must be at least 1, got {concurrency}.")
        self.model, self.name = model, name or f"openai:{model}"
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.retry_window, self.backoff = retry_window, backoff or Backoff()
        self.retries = 0
        self._answered = False  # has the server ever answered? (then connection errors retry)
        self._rng = random.Random()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def complete(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[Completion]:
        """One :class:`Completion` per request, in input order; raises LMError on failure."""
        if not requests:
            return []
        results: list[Completion | None] = [None] * len(requests)
        job = self._complete_all(list(requests), progress, results)
        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop in this thread: the usual case
                return asyncio.run(job)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop runs here already
                return pool.submit(asyncio.run, job).result()
        except BaseException as e:  # an LMError, or Ctrl+C: say what did arrive (see CachedLM)
            e.completed = {i: c for i, c in enumerate(results) if c is not None}  # type: ignore[attr-defined]
            raise

    async def _complete_all(
        self, requests: list[ChatRequest], progress: bool, results: list[Completion | None]
    ) -> list[Completion]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency)
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        gate = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
            with tqdm(total=len(requests), desc=self.name, unit="req", disable=not progress) as bar:

                async def one(i: int) -> None:
                    async with gate:
                        results[i] = await self._complete_one(client, requests[i])
                    bar.update(1)

                tasks = [asyncio.ensure_future(one(i)) for i in range(len(requests))]
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        errors = [t.exception() for t in done if not t.cancelled() and t.exception()]
        if errors:
            raise errors[0]  # type: ignore[misc]  # complete() adds what did arrive
        return [c for c in results if c is not None]

    async def _complete_one(self, client: httpx.AsyncClient, request: ChatRequest) -> Completion:
        body = _request_body(self.model, request)
        attempt, first_failure = 0, None
        while True:
            try:
                return await self._post(client, body)
            except _Retry as e:
                now = time.monotonic()
                first_failure = first_failure or now
                attempt += 1
                delay = self._next_delay(e, attempt, now - first_failure)
                if delay is None:
                    raise self._gave_up(e, attempt - 1) from e
                self.retries += 1
                await asyncio.sleep(delay)

    def _next_delay(self, e: _Retry, attempt: int, elapsed: float) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up."""
        if e.connection and not self._answered:  # nobody there yet: fail fast
            if attempt >= self.backoff.first_contact_tries:
                return None
            return self.backoff.first_contact
        if e.connection:  # the server answered before: it may be restarting
            if attempt > self.max_retries and elapsed >= self.retry_window:
                return None
        elif attempt > self.max_retries:
            return None
        if e.wait is not None:
            return min(e.wait, self.retry_window)
        return self.backoff.delay(attempt - 1, self._rng)

    def _gave_up(self, e: _Retry, retries: int) -> LMError:
        if e.connection and not self._answered:
            return LMError(
                f"cannot reach {self.url}: {e.reason}.",
                fix="check that the server is running and that base_url (or $OPENAI_BASE_URL) "
                "is right; OpenAI-compatible servers usually serve under /v1.",
            )
        return LMError(
            f"gave up on {self.url} after {retries} retries; last error: {e.reason}.",
            fix="check the server's logs and load, or raise timeout / max_retries / "
            "retry_window (options of the openai backend, e.g. build_lm(spec, timeout=1200)).",
        )

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Completion:
        try:
            response = await client.post(self.url, json=body)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as e:
            raise LMError(f"cannot send to {self.url}: {e}.", fix="check base_url.") from e
        except (httpx.ConnectTimeout, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            reason = f"{type(e).__name__}: {str(e) or 'connection failed'}"
            raise _Retry(reason, connection=True) from e
        except httpx.TimeoutException as e:
            raise _Retry(f"timed out after {self.timeout} s ({type(e).__name__})") from e
        except (httpx.TransportError, httpx.InvalidURL) as e:  # proxy errors, malformed URLs
            raise LMError(f"cannot send to {self.url}: {type(e).__name__}: {e}.") from e
        self._answered = True
        status = response.status_code
        if status in _RETRY_STATUSES or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            raise _Retry(f"HTTP {status}: {_error_message(response)}", wait=wait)
        if status >= 400:
            raise self._client_error(response)
        return _parse_completion(response, self.url)

    def _client_error(self, response: httpx.Response) -> LMError:
        status, message = response.status_code, _error_message(response)
        if status in (401, 403):
            sent = "the API key that was sent" if self.api_key else "no API key was sent"
            return LMError(
                f"{self.url} refused the request (HTTP {status}, {sent}): {message}",
                fix="set OPENAI_API_KEY (or pass api_key=) to a key this server accepts.",
            )
        if status == 404:
            return LMError(
                f"{self.url} answered 404 for model '{self.model}': {message}",
                fix=f"check the base URL (it usually ends in /v1; GET {self.base_url}/models "
                "lists the models) and the model name.",
            )
        return LMError(f"{self.url} rejected the request (HTTP {status}): {message}")


def _request_body(model: str, r: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": r.chat(),
        "temperature": r.temperature,
        "top_p": r.top_p,
        "max_tokens": r.max_tokens,
        "n": r.n,
    }
    if r.stop:  # some servers reject an empty list
        body["stop"] = list(r.stop)
    if r.seed is not None:
        body["seed"] = r.seed
    return body


def _parse_completion(response: httpx.Response, url: str) -> Completion:
    try:
        data = response.json()
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        reasons = [c.get("finish_reason") or "stop" for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LMError(
            f"{url} answered HTTP {response.status_code} with no chat completion "
            f"({type(e).__name__}: {e}); body starts: {response.text[:200]!r}",
            fix="check that base_url points at an OpenAI-compatible /v1 API.",
        ) from e
    usage = data.get("usage") or {}
    return Completion(
        texts,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reasons=reasons,
    )


def _error_message(response: httpx.Response) -> str:
    """The server's error text: OpenAI's ``{"error": {"message"}}``, else the body's start."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)
    except (ValueError, AttributeError):
        pass
    return response.text[:200].strip() or response.reason_phrase or "no message"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
