"""An OpenAI-compatible HTTP server (FastAPI + uvicorn) over LMs, dynamically batched, streaming.

``instructkit serve MODEL [--adapter NAME=DIR ...]`` runs it over a local model and its
adapters; from Python::

    handle = start_server(LocalLM.load("tiny-random-llama"), port=0)  # port 0: a free port
    client = openai.OpenAI(base_url=handle.base_url, api_key="none")
    handle.stop()

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (OpenAI's schema, with
``stream: true`` as server-sent events: ``data: {chunk}`` lines and a final ``data: [DONE]``),
``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``. Errors use OpenAI's schema
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad body (naming the field),
401 for a missing or wrong API key, 404 for an unknown model or URL, 413 for a body over
``max_body_bytes`` (refused from its Content-Length, or as soon as that many bytes arrived).

Several models from one process: ``lms`` maps served names to LMs, e.g. a base model and LoRA
adapters sharing its weights (:meth:`LocalLM.load_with_adapters`); a request picks one by its
``model`` field (absent: the first). Batching is done by one worker thread
(:mod:`instructkit.lm.batching`); batches never mix models. Streamed text comes from the LM's
decode steps as they happen (:class:`~instructkit.lm.base.Abandonable`); an LM without that
capability sends its whole answer in one chunk. A client that disconnects, streaming or not,
has its request dropped or its generation stopped at the next decode step; ``GET /health``
counts them (``abandoned``, ``dropped``, ``stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from instructkit.errors import ConfigError, InstructkitError, ModelError, TemplateError
from instructkit.lm.base import DEFAULT_BATCH, LM, ChatRequest, Completion
from instructkit.lm.batching import BatchWorker, Pending
from instructkit.lm.serve_schema import (
    ChatBody,
    CompletionBody,
    RequestError,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    new_id,
    parse_body,
    parse_chat_request,
    usage,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "BatchWorker",
    "Pending",
    "RequestError",
    "ServerHandle",
    "build_app",
    "check_adapter_dir",
    "exposure_warning",
    "is_loopback",
    "parse_chat_request",
    "run_server",
    "start_server",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_POLL_S = 0.2  # how often a waiting request checks that its client is still connected


# ---------------------------------------------------------------- the application


@dataclass
class _Served:
    """What the routes share: the worker, the settings, the server's start time."""

    worker: BatchWorker
    api_key: str | None
    max_body_bytes: int
    created: int

    def model(self, name: str | None) -> str:
        """The served name a request's ``model`` picks (None: the default), or 404."""
        if name is None:
            return self.worker.default
        if name not in self.worker.lms:
            served = ", ".join(f"'{n}'" for n in self.worker.lms)
            raise RequestError(
                404,
                f"the model '{name}' is not served here; this server serves {served}.",
                param="model",
                code="model_not_found",
            )
        return name

    def card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "instructkit"}

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise RequestError(
                401,
                "missing or incorrect API key: send 'Authorization: Bearer KEY' with the key "
                "the server was started with (--api-key).",
                code="invalid_api_key",
            )


def build_app(
    worker: BatchWorker,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The ASGI application over a started :class:`BatchWorker` (see the module docstring)."""
    served = _Served(worker, api_key, max_body_bytes, int(time.time()))
    app = FastAPI(title="instructkit serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": worker.default,
            "models": list(worker.lms),
            "requests": sum(worker.batch_sizes),
            "batches": len(worker.batch_sizes),
            "abandoned": worker.abandoned,
            "dropped": worker.dropped,
            "stopped": worker.stopped,
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        served.authorize(request)
        return {"object": "list", "data": [served.card(n) for n in worker.lms]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        served.authorize(request)
        return served.card(served.model(name))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        served.authorize(request)
        body = parse_body(await _read_body(request, served.max_body_bytes), ChatBody)
        name = served.model(body.model)
        requests = [body.chat_request()]
        if body.stream:
            events = _events(request, worker, requests, name, False, body.include_usage)
            return _sse(events)
        [completion] = await _wait(request, worker, requests, name, raw=False)
        return JSONResponse(chat_response(completion, name))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        served.authorize(request)
        body = parse_body(await _read_body(request, served.max_body_bytes), CompletionBody)
        name = served.model(body.model)
        requests = body.chat_requests()
        if body.stream:
            return _sse(_events(request, worker, requests, name, True, body.include_usage))
        completions = await _wait(request, worker, requests, name, raw=True)
        return JSONResponse(completion_response(completions, name))

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 from its Content-Length or once more than ``limit`` bytes arrived."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        413, f"the body must be at most {limit} bytes (--max-body-bytes).", code="too_large"
    )


async def _request_error(request: Request, e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def _http_error(request: Request, e: HTTPException) -> JSONResponse:
    """Starlette's routing errors (unknown URL, wrong method) in OpenAI's schema."""
    path = request.url.path
    if e.status_code == 405:
        allow = (e.headers or {}).get("Allow", "")
        err = RequestError(405, f"{request.method} is not allowed on {path}; use {allow}.")
        err.code = "method_not_allowed"
        return JSONResponse(err.body(), status_code=405, headers={"Allow": allow})
    if e.status_code == 404:
        err = RequestError(404, f"no such endpoint: {request.method} {path}.", code="unknown_url")
    else:
        err = RequestError(e.status_code, str(e.detail))
    return JSONResponse(err.body(), status_code=err.status)


async def _internal_error(request: Request, e: Exception) -> JSONResponse:
    log.exception("request failed")
    err = RequestError(500, f"internal error: {e}", type="server_error", code="internal")
    return JSONResponse(err.body(), status_code=500)


def _generation_error(e: BaseException) -> RequestError:
    """What a client is told when generating its answer raised ``e``."""
    if isinstance(e, RequestError):
        return e
    if isinstance(e, InstructkitError):
        status = 400 if isinstance(e, TemplateError) else 500
        kind = "invalid_request_error" if status == 400 else "server_error"
        return RequestError(status, f"generation failed: {e}", type=kind)
    return RequestError(500, f"generation failed: {type(e).__name__}: {e}", type="server_error")


# ---------------------------------------------------------------- answering


class _ClientGone(Exception):
    """The client disconnected while its request waited: there is no one to answer."""


async def _wait(
    request: Request,
    worker: BatchWorker,
    requests: list[ChatRequest],
    model: str,
    *,
    raw: bool,
) -> list[Completion]:
    """Submit ``requests``, wait for their completions, abandon them if the client leaves."""
    futures = [worker.submit(r, model=model, raw=raw) for r in requests]
    waiting = [asyncio.wrap_future(f) for f in futures]
    try:
        while True:
            _, pending = await asyncio.wait(waiting, timeout=_POLL_S)
            if not pending:
                break
            if await request.is_disconnected():
                raise _ClientGone
        return [w.result() for w in waiting]
    except _ClientGone:
        raise
    except Exception as e:
        raise _generation_error(e) from e
    finally:
        for f in futures:
            worker.abandon(f)  # a no-op for those that are done


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _data(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


async def _events(
    request: Request,
    worker: BatchWorker,
    requests: list[ChatRequest],
    model: str,
    raw: bool,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The server-sent events of a streamed answer: text as it is generated, per choice; then a
    finish chunk per choice, an optional usage chunk, and ``[DONE]``.

    Choice ``k * n + j`` is the ``j``-th answer to prompt ``k``. The worker thread hands pieces
    of text to this coroutine's loop through a queue; the final text of a choice (from its
    completion) supplies whatever the pieces did not (an LM that does not stream: all of it).
    """
    loop, queue = asyncio.get_running_loop(), asyncio.Queue[tuple[str, int, Any]]()
    chunk = _Chunks(new_id("cmpl" if raw else "chatcmpl"), model, raw)
    futures = _submit_streamed(worker, requests, model, raw, lambda item: _put(loop, queue, item))
    sent = [""] * (len(requests) * requests[0].n)
    try:
        if not raw:
            for i in range(len(sent)):
                yield _data(chunk.piece(i, "", role=True))
        done, tokens, checked = 0, [0, 0], time.monotonic()
        while done < len(requests):
            if time.monotonic() - checked > _POLL_S:  # also while text flows
                if await request.is_disconnected():
                    return
                checked = time.monotonic()
            try:
                kind, index, payload = await asyncio.wait_for(queue.get(), _POLL_S)
            except TimeoutError:
                continue
            if kind == "text":
                sent[index] += payload
                yield _data(chunk.piece(index, payload))
                continue
            done += 1
            if payload.cancelled() or payload.exception() is not None:
                error = _generation_error(payload.exception() or RuntimeError("cancelled"))
                yield _data(error.body())
                break
            completion: Completion = payload.result()
            tokens[0] += completion.prompt_tokens
            tokens[1] += completion.completion_tokens
            for line in chunk.finish(index * len(completion.texts), completion, sent):
                yield line
        else:
            if include_usage:
                yield _data(chunk.usage(*tokens))
        yield _data("[DONE]")
    finally:
        for f in futures:
            worker.abandon(f)  # the client left (or an error ended the stream): stop generating


def _submit_streamed(
    worker: BatchWorker,
    requests: list[ChatRequest],
    model: str,
    raw: bool,
    put: Callable[[tuple[str, int, Any]], None],
) -> list[Pending]:
    futures = []
    for k, r in enumerate(requests):
        # A greedy request's n answers are one answer repeated: its text goes to every choice.
        copies = range(r.n) if r.temperature <= 0 else None

        def sink(j: int, text: str, k: int = k, n: int = r.n, copies: Any = copies) -> None:
            for c in copies or (j,):
                put(("text", k * n + c, text))

        def done(f: Future[Completion], k: int = k) -> None:
            put(("done", k, f))

        f = worker.submit(r, model=model, raw=raw, on_text=sink)
        f.add_done_callback(done)
        futures.append(f)
    return futures


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> None:
    """Hand ``item`` from the worker thread to the loop (a no-op once the loop has closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, item)


@dataclass
class _Chunks:
    """Builds the streamed objects of one answer: chat chunks, or text completion chunks."""

    id: str
    model: str
    raw: bool

    def piece(self, index: int, text: str, *, role: bool = False) -> dict[str, Any]:
        if self.raw:
            return completion_chunk(self.id, self.model, index, text)
        delta = {"role": "assistant", "content": text} if role else {"content": text}
        return chat_chunk(self.id, self.model, index, delta)

    def finish(self, first: int, completion: Completion, sent: list[str]) -> Iterator[str]:
        """The rest of each choice's text (beyond what was streamed) and its finish chunk."""
        for j, text in enumerate(completion.texts):
            i = first + j
            rest = text[len(sent[i]) :] if text.startswith(sent[i]) else ""
            if rest:
                yield _data(self.piece(i, rest))
            reasons = completion.finish_reasons
            reason = reasons[j] if j < len(reasons) else "stop"
            if self.raw:
                yield _data(completion_chunk(self.id, self.model, i, "", reason))
            else:
                yield _data(chat_chunk(self.id, self.model, i, {}, reason))

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        chunk = self.piece(0, "")
        chunk["choices"] = []
        chunk["usage"] = usage(prompt_tokens, completion_tokens)
        return chunk


# ---------------------------------------------------------------- starting and stopping


class _Uvicorn(uvicorn.Server):
    """uvicorn's server; a signal stops the worker too, and the caller's signal handlers are
    restored afterwards without re-raising the signal (uvicorn's default would kill the process
    that called :func:`run_server`)."""

    def __init__(self, config: uvicorn.Config, worker: BatchWorker) -> None:
        super().__init__(config)
        self.worker = worker

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # Fail the queued requests at once, so that their clients are answered (503) and the
        # graceful shutdown does not wait for them.
        threading.Thread(target=self.worker.stop, daemon=True).start()


@dataclass
class ServerHandle:
    """A server running on a background thread; ``stop()`` shuts it down."""

    url: str  # http://host:port
    port: int
    worker: BatchWorker
    server: _Uvicorn
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        """What OpenAI clients take as ``base_url``."""
        return f"{self.url}/v1"

    def stop(self) -> None:
        """Stop accepting, finish the running batch, fail queued requests (503), and close."""
        self.server.should_exit = True
        self.worker.stop()
        self.thread.join()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The line printed when the server listens beyond loopback (None on loopback)."""
    if is_loopback(host):
        return None
    return f"warning: listening on {host}: anyone who can reach this machine can use the " + (
        "model (with the API key)." if api_key else "model; set --api-key to require a key."
    )


def _server(
    lms: LM | Mapping[str, LM],
    host: str,
    port: int,
    model_name: str | None,
    settings: dict[str, Any],
) -> tuple[_Uvicorn, socket.socket, BatchWorker]:
    """A bound socket and an unstarted server over a started worker."""
    if not isinstance(lms, Mapping):
        lms = {model_name or lms.name: lms}
    worker = BatchWorker(lms, max_batch=settings["max_batch"], max_wait_ms=settings["max_wait_ms"])
    try:
        sock = _bind(host, port)
    except ConfigError:
        worker.stop()
        raise
    app = build_app(worker, api_key=settings["api_key"], max_body_bytes=settings["max_body_bytes"])
    config = uvicorn.Config(
        app,
        log_config=None,  # leave the caller's logging alone
        access_log=settings["access_log"],
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )
    return _Uvicorn(config, worker), sock, worker


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror or str(e)}.",
            fix="choose another --port (0 picks a free one) or --host.",
        ) from e
    sock.listen(2048)  # clients that come before the loop runs wait in the backlog
    return sock


def _url(sock: socket.socket) -> str:
    host, port = str(sock.getsockname()[0]), sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _settings(
    max_batch: int, max_wait_ms: float, api_key: str | None, max_body_bytes: int, access: bool
) -> dict[str, Any]:
    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be at least 1, got {max_body_bytes}.")
    return {
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "api_key": api_key or None,
        "max_body_bytes": max_body_bytes,
        "access_log": access,
    }


def start_server(
    lms: LM | Mapping[str, LM],
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    *,
    max_batch: int = DEFAULT_BATCH,
    max_wait_ms: float = 50.0,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ServerHandle:
    """Serve on a background thread; returns once it accepts connections, with its URL.

    ``lms``: one LM (served as ``model_name``, default its ``name``) or ``{served name: LM}``.
    """
    settings = _settings(max_batch, max_wait_ms, api_key, max_body_bytes, False)
    server, sock, worker = _server(lms, host, port, model_name, settings)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="instructkit-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            worker.stop()
            raise ModelError(f"the server on {_url(sock)} did not start.")
        time.sleep(0.01)
    return ServerHandle(_url(sock), sock.getsockname()[1], worker, server, thread)


def run_server(
    lms: LM | Mapping[str, LM],
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    *,
    max_batch: int = DEFAULT_BATCH,
    max_wait_ms: float = 50.0,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve in the calling (main) thread until SIGINT or SIGTERM, then shut down cleanly."""
    settings = _settings(max_batch, max_wait_ms, api_key, max_body_bytes, True)
    server, sock, worker = _server(lms, host, port, model_name, settings)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in handled}
    _show_access_log()
    names = ", ".join(f"'{n}'" for n in worker.lms)
    announce(f"serving {names} at {_url(sock)} (OpenAI base URL {_url(sock)}/v1); Ctrl+C to stop")
    warning = exposure_warning(host, api_key)
    if warning:
        announce(warning)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.stop()
        sock.close()
        announce("stopped")


def _show_access_log() -> None:
    """One line per request on stderr (uvicorn's access log), unless logging is set up."""
    access = logging.getLogger("uvicorn.access")
    if not access.handlers and not logging.getLogger().handlers:
        access.addHandler(logging.StreamHandler())
        access.setLevel(logging.INFO)


def check_adapter_dir(path: str | Path) -> Path:
    """Fail early, before loading a model, when ``path`` is not a saved PEFT adapter."""
    p = Path(path)
    if not (p / "adapter_config.json").is_file():
        raise ModelError(
            f"'{p}' is not a PEFT adapter directory (no adapter_config.json).",
            fix="pass the adapter/ folder that `instructkit train sft` wrote "
            "(it holds adapter_config.json and adapter_model.safetensors).",
        )
    return p
