"""An OpenAI-compatible HTTP server over any :class:`~instructkit.lm.base.LM`, dynamically batched.

``instructkit serve MODEL [--adapter DIR]`` runs it over a local model; from Python::

    handle = start_server(LocalLM.load("tiny-random-llama"), port=0)  # port 0: a free port
    ...  # POST f"{handle.base_url}/chat/completions"
    handle.stop()

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` (OpenAI's
request and response schema, no streaming) and ``GET /health``. Errors use OpenAI's schema
``{"error": {"message", "type", "param", "code"}}``.

Requests arrive on many handler threads (stdlib ``ThreadingHTTPServer``) and are funnelled into
one :class:`BatchWorker` thread, the only thread that calls the model. It batches requests with
the same sampling parameters, up to ``max_batch``, waiting at most ``max_wait_ms`` for the
clients of recent batches to come back (static batching: a batch runs to its longest answer).
Greedy requests batch whatever their ``top_p``, ``seed`` or ``n``; sampled requests that carry a
``seed`` are generated alone, so that their answer does not depend on other clients' requests.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from instructkit.errors import ConfigError, InstructkitError, ModelError, TemplateError
from instructkit.lm.base import LM, ChatRequest, Completion

__all__ = [
    "BatchWorker",
    "ChatServer",
    "RequestError",
    "ServerHandle",
    "build_server",
    "check_adapter_dir",
    "parse_chat_request",
    "run_server",
    "start_server",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
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


# ---------------------------------------------------------------- request parsing (pure)


def _bad(param: str, message: str) -> RequestError:
    return RequestError(400, f"'{param}': {message}", param=param, code="invalid_value")


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(key, f"expected a number, got {type(value).__name__}.")
    if not lo <= value <= hi:
        raise _bad(key, f"must be between {lo} and {hi}, got {value}.")
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int | None, lo: int) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, f"expected an integer, got {type(value).__name__}.")
    if value < lo:
        raise _bad(key, f"must be at least {lo}, got {value}.")
    return value


def _content(value: Any, param: str) -> str:
    """A message's content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise _bad(f"{param}[{j}]", "only text content parts are supported.")
            if not isinstance(part.get("text"), str):
                raise _bad(f"{param}[{j}].text", "expected a string.")
            texts.append(part["text"])
        return "\n".join(texts)
    raise _bad(param, f"expected a string or a list of text parts, got {type(value).__name__}.")


def _messages(value: Any) -> list[dict[str, str]]:
    if value is None:
        raise RequestError(400, "'messages' is required.", param="messages", code="missing")
    if not isinstance(value, list) or not value:
        raise _bad("messages", "expected a non-empty list of {role, content} objects.")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", "expected an object with 'role' and 'content'.")
        role = m.get("role")
        if role not in _ROLES:
            raise _bad(f"messages[{i}].role", f"must be one of {sorted(_ROLES)}, got {role!r}.")
        out.append({"role": _ROLES[role], "content": _content(m.get("content"), f"messages[{i}]")})
    return out


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise _bad("stop", "expected a string or a list of strings.")


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Features this server cannot honour: refuse them rather than silently ignore them."""
    if body.get("stream"):
        raise RequestError(
            400,
            "streaming not supported: this server answers only with complete responses; "
            "send 'stream': false (or leave it out).",
            param="stream",
            code="unsupported",
        )
    for key in ("tools", "functions"):
        if body.get(key):
            raise RequestError(400, f"'{key}' is not supported.", param=key, code="unsupported")
    if body.get("logprobs"):
        raise RequestError(
            400, "'logprobs' is not supported.", param="logprobs", code="unsupported"
        )
    for key in ("presence_penalty", "frequency_penalty"):
        if body.get(key):
            raise RequestError(
                400, f"'{key}' is not supported (only 0).", param=key, code="unsupported"
            )
    fmt = body.get("response_format")
    if fmt and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise RequestError(
            400,
            "'response_format' is not supported (only {'type': 'text'}).",
            param="response_format",
            code="unsupported",
        )


def parse_chat_request(body: Any, served: str) -> ChatRequest:
    """Validate an OpenAI chat-completions body; raise :class:`RequestError` naming the field.

    Defaults follow OpenAI (``temperature`` 1, ``top_p`` 1, ``n`` 1) except ``max_tokens``: 256.
    Unknown fields (``user``, ``metadata``, ...) are ignored; features that would change the
    answer but are not implemented (``stream``, ``tools``, ``logprobs``, penalties, JSON mode)
    are refused with 400.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object.")
    model = body.get("model")
    if model is not None and model != served:
        raise RequestError(
            404,
            f"the model '{model}' is not served here; this server serves '{served}'.",
            param="model",
            code="model_not_found",
        )
    _refuse_unsupported(body)
    messages = _messages(body.get("messages"))
    max_tokens = _integer(body, "max_completion_tokens", None, 1)
    max_tokens = _integer(body, "max_tokens", max_tokens or 256, 1)
    return ChatRequest.from_messages(
        messages,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),  # OpenAI's default
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        max_tokens=max_tokens,
        n=_integer(body, "n", 1, 1),
        stop=_stop(body.get("stop")),
        seed=_integer(body, "seed", None, -(2**63)),
    )


def chat_response(completion: Completion, model: str) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object for one :class:`Completion`."""
    reasons = completion.finish_reasons or []
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": reasons[i] if i < len(reasons) else "stop",
        }
        for i, text in enumerate(completion.texts)
    ]
    usage = {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


# ---------------------------------------------------------------- the generation worker


@dataclass
class _Job:
    request: ChatRequest
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple | None:
        """Requests with equal keys may share a batch; None: generate this one alone."""
        r = self.request
        if r.temperature <= 0:  # greedy: top_p, seed and n do not change what is generated
            return (0.0, r.max_tokens, r.stop)
        if r.seed is not None:
            # Batched samples share one random stream, so a seeded answer would depend on its
            # batch-mates: generate seeded requests alone, so the same request gives the same text.
            return None
        return (r.temperature, r.top_p, r.max_tokens, r.n, r.stop)


class BatchWorker:
    """The one thread that calls the model: groups compatible requests into batches.

    ``submit`` (any thread) returns a future of the :class:`Completion`. Requests with equal
    sampling parameters share a batch of at most ``max_batch``. A batch takes what is queued,
    then waits at most ``max_wait_ms`` for the requests it can expect: one from each client of
    the batch that just ended, plus those that queued while it ran. Steady clients are so
    gathered into full batches, and a lone client (or one after an idle spell) is not kept
    waiting. The first batch waits to fill.
    """

    def __init__(self, lm: LM, *, max_batch: int = 8, max_wait_ms: float = 50.0) -> None:
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}.")
        self.lm, self.max_batch, self.max_wait_s = lm, max_batch, max_wait_ms / 1000
        self.batch_sizes: list[int] = []  # one entry per model call, for /health and tests
        self._last = max_batch  # size of the last batch (the first batch waits to fill)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: deque[_Job] = deque()  # taken from the queue but incompatible with a batch
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="instructkit-generate", daemon=True)
        self._thread.start()

    def submit(self, request: ChatRequest) -> Future:
        job = _Job(request)
        with self._lock:  # so that no job slips into the queue after stop() drained it
            if self._stopped.is_set():
                job.future.set_exception(_shutting_down())
            else:
                self._queue.put(job)
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in progress, fail the queued requests, and end the thread."""
        with self._lock:
            self._stopped.set()
            self._queue.put(None)
        self._thread.join(timeout)
        held: list[_Job] = []
        if not self._thread.is_alive():  # else the worker still owns them
            held, self._held = [*self._held], deque()
        for job in [*held, *_drain(self._queue)]:
            job.future.set_exception(_shutting_down())

    def _loop(self) -> None:
        while not self._stopped.is_set():
            batch = self._next_batch()
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[_Job]:
        # How many requests to expect: the clients of the batch that just ended send their
        # next requests a few milliseconds apart, and those queued meanwhile are waiting.
        # Generating before they are in would split one cohort into two half-full batches.
        ended = time.monotonic()
        expected = min(self.max_batch, self._last + self._queue.qsize() + len(self._held))
        first = self._held.popleft() if self._held else self._queue.get()
        if first is None:
            return []
        if first.key is None:
            return [first]
        if self.batch_sizes and time.monotonic() - ended > self.max_wait_s:
            expected = 1  # the last batch's clients did not come back: wait for no one
        batch = [first]
        for job in list(self._held):
            if len(batch) < self.max_batch and job.key == first.key:
                self._held.remove(job)
                batch.append(job)
        self._take(batch, wait=False)  # whatever is queued already
        if len(batch) < expected:
            self._take(batch, wait=True, until=expected)
        self._last = len(batch)
        return batch

    def _take(self, batch: list[_Job], *, wait: bool, until: int | None = None) -> None:
        """Move queued jobs into ``batch`` (same key) or the held list, up to ``until``."""
        limit = min(self.max_batch, until or self.max_batch)
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < limit:
            try:
                if wait:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._queue.put(None)  # leave the stop signal for the loop
                return
            (batch if job.key == batch[0].key else self._held).append(job)

    def _run(self, batch: list[_Job]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            results = self.lm.complete([j.request for j in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the LM returned {len(results)} completions for {len(batch)}.")
        except Exception as e:
            if len(batch) == 1:
                log.exception("generation failed")
                batch[0].future.set_exception(e)
            else:  # one bad request must not fail the others: retry them one by one
                for job in batch:
                    self._run([job])
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)


def _drain(q: queue.Queue) -> list[_Job]:
    jobs = []
    while True:
        try:
            job = q.get_nowait()
        except queue.Empty:
            return jobs
        if job is not None:
            jobs.append(job)


def _shutting_down() -> RequestError:
    return RequestError(503, "the server is shutting down.", type="server_error", code="shutdown")


# ---------------------------------------------------------------- HTTP


class ChatServer(ThreadingHTTPServer):
    """A threading HTTP server that owns a :class:`BatchWorker`."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's default of 5 drops bursts of concurrent clients

    def __init__(self, address: tuple[str, int], worker: BatchWorker, model_name: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.worker, self.model_name, self.access_log = worker, model_name, False
        self.created = int(time.time())
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def close(self) -> None:
        """Stop the worker and close the listening socket (after ``serve_forever`` returned)."""
        self.worker.stop()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OpenAI clients expect
    timeout = 120  # seconds an idle keep-alive connection is kept open
    server: ChatServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            route, allowed = self._route(path)
            if route is None:
                raise RequestError(404, f"no such endpoint: {method} {path}.", code="unknown_url")
            if method != allowed:
                self._allow = allowed
                raise RequestError(
                    405,
                    f"{method} is not allowed on {path}; use {allowed}.",
                    code="method_not_allowed",
                )
            self._send(200, route(body))
        except RequestError as e:
            self._send(e.status, e.body())
        except Exception as e:  # a bug here must still answer the client
            log.exception("request failed")
            err = RequestError(500, f"internal error: {e}", type="server_error", code="internal")
            self._send(500, err.body())

    def _route(self, path: str) -> tuple[Callable[[bytes], dict] | None, str]:
        if path == "/v1/chat/completions":
            return self._chat, "POST"
        if path == "/v1/models":
            return lambda _b: {"object": "list", "data": [self._model_card()]}, "GET"
        if path.startswith("/v1/models/"):
            return self._model, "GET"
        if path == "/health":
            return self._health, "GET"
        return None, ""

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise RequestError(411, "send the body with a Content-Length header.")
            return b""
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(413, f"the body must be at most {MAX_BODY_BYTES} bytes.")
        return self.rfile.read(int(length))

    def _chat(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON: {e}.", code="invalid_json") from e
        request = parse_chat_request(body, self.server.model_name)
        try:
            completion = self.server.worker.submit(request).result()
        except RequestError:
            raise
        except InstructkitError as e:
            status = 400 if isinstance(e, TemplateError) else 500
            kind = "invalid_request_error" if status == 400 else "server_error"
            raise RequestError(status, f"generation failed: {e}", type=kind) from e
        except Exception as e:
            raise RequestError(
                500, f"generation failed: {type(e).__name__}: {e}", type="server_error"
            ) from e
        return chat_response(completion, self.server.model_name)

    def _model_card(self) -> dict[str, Any]:
        s = self.server
        return {"id": s.model_name, "object": "model", "created": s.created, "owned_by": "local"}

    def _model(self, _body: bytes) -> dict[str, Any]:
        name = self.path.split("?", 1)[0].rstrip("/")[len("/v1/models/") :]
        if name != self.server.model_name:
            raise RequestError(
                404,
                f"the model '{name}' is not served here.",
                param="model",
                code="model_not_found",
            )
        return self._model_card()

    def _health(self, _body: bytes) -> dict[str, Any]:
        sizes = self.server.worker.batch_sizes
        return {
            "status": "ok",
            "model": self.server.model_name,
            "requests": sum(sizes),
            "batches": len(sizes),
        }

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 405:
                self.send_header("Allow", getattr(self, "_allow", ""))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            super().log_message(format, *args)


# ---------------------------------------------------------------- starting and stopping


@dataclass
class ServerHandle:
    """A server running on a background thread; ``stop()`` shuts it down."""

    url: str  # http://host:port
    port: int
    server: ChatServer
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        """What OpenAI clients take as ``base_url``."""
        return f"{self.url}/v1"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
            self.server.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_server(
    lm: LM,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    *,
    max_batch: int = 8,
    max_wait_ms: float = 50.0,
) -> ChatServer:
    """Bind a :class:`ChatServer` (port 0 picks a free port) with its worker thread started."""
    worker = BatchWorker(lm, max_batch=max_batch, max_wait_ms=max_wait_ms)
    try:
        return ChatServer((host, port), worker, model_name or lm.name)
    except OSError as e:
        worker.stop()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror or e}.",
            fix="choose another --port (0 picks a free one) or --host.",
        ) from e


def _url(server: ChatServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


def start_server(
    lm: LM,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str | None = None,
    *,
    max_batch: int = 8,
    max_wait_ms: float = 50.0,
) -> ServerHandle:
    """Serve ``lm`` on a background thread; returns at once with the bound URL and port."""
    server = build_server(lm, host, port, model_name, max_batch=max_batch, max_wait_ms=max_wait_ms)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="instructkit-serve", daemon=True
    )
    thread.start()
    return ServerHandle(_url(server), server.server_address[1], server, thread)


def run_server(
    lm: LM,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    *,
    max_batch: int = 8,
    max_wait_ms: float = 50.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve in the calling (main) thread until SIGINT or SIGTERM, then shut down cleanly."""
    server = build_server(lm, host, port, model_name, max_batch=max_batch, max_wait_ms=max_wait_ms)
    server.access_log = True
    previous = signal.signal(signal.SIGTERM, _interrupt)
    announce(
        f"serving '{server.model_name}' at {_url(server)} (OpenAI base URL {_url(server)}/v1); "
        "Ctrl+C to stop"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        announce("shutting down")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


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
