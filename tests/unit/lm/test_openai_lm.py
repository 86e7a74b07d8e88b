"""OpenAILM against a real loopback HTTP server that scripts its answers."""

import asyncio
import contextlib
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instructkit.errors import LMError
from instructkit.lm.base import ChatRequest
from instructkit.lm.openai import Backoff, OpenAILM

FAST = Backoff(base=0.01, cap=0.05, first_contact=0.25)


def ask(text, **params):
    return ChatRequest.from_messages([{"role": "user", "content": text}], **params)


def answer(body, status=200, headers=None):
    """A chat.completion whose choices echo the last message (choices listed in reverse)."""
    content = body["messages"][-1]["content"]
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": f"{content}#{i}"},
            "finish_reason": "stop",
        }
        for i in range(body.get("n", 1))
    ]
    usage = {"prompt_tokens": 3, "completion_tokens": 2 * len(choices)}
    return status, {"choices": choices[::-1], "usage": usage}, headers or {}


def error(status, message, headers=None):
    return status, {"error": {"message": message, "type": "x"}}, headers or {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append((self.path, dict(self.headers), body))
        status, payload, headers = self.server.script(self, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script, port=0):
        self.script, self.received, self.lock = script, [], threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def server_bind(self):  # skip HTTPServer's host name lookup
        socketserver.TCPServer.server_bind(self)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self):
        self.shutdown()
        self.server_close()


@contextlib.contextmanager
def serving(script, port=0):
    server = Server(script, port)
    try:
        yield server
    finally:
        server.stop()


def script_of(*steps):
    """Answer with ``steps`` in turn (each a function of the body), then keep answering."""
    queue = list(steps)

    def script(handler, body):
        return queue.pop(0)(body) if queue else answer(body)

    return script


def test_success_sends_parameters_and_reads_choices_in_index_order():
    with serving(script_of()) as server:
        lm = OpenAILM("m1", server.base_url, api_key="k", backoff=FAST)
        out = lm.complete(
            [ask("a"), ask("b", temperature=0.5, top_p=0.9, max_tokens=7, n=2, stop=["x"], seed=4)]
        )
    assert [c.texts for c in out] == [["a#0"], ["b#0", "b#1"]]
    assert out[1].prompt_tokens == 3 and out[1].completion_tokens == 4
    assert out[1].finish_reasons == ["stop", "stop"]
    assert lm.retries == 0
    bodies = sorted((b for _, _, b in server.received), key=lambda b: b["messages"][0]["content"])
    assert bodies[1] == {
        "model": "m1",
        "messages": [{"role": "user", "content": "b"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 7,
        "n": 2,
        "stop": ["x"],
        "seed": 4,
    }
    assert "stop" not in bodies[0] and "seed" not in bodies[0]
    path, headers, _ = server.received[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k"


def test_many_requests_keep_their_order():
    with serving(script_of()) as server:
        lm = OpenAILM("m", server.base_url, concurrency=4)
        out = lm.complete([ask(str(i)) for i in range(30)])
    assert [c.text for c in out] == [f"{i}#0" for i in range(30)]


def test_429_is_retried_honouring_retry_after():
    steps = [lambda b: error(429, "slow down", {"Retry-After": "0"})]
    with serving(script_of(*steps)) as server:
        # A backoff of tens of seconds: finishing at all shows that Retry-After: 0 was used.
        lm = OpenAILM("m", server.base_url, backoff=Backoff(base=30, cap=30))
        [c] = lm.complete([ask("a")])
    assert c.text == "a#0"
    assert lm.retries == 1 and len(server.received) == 2


def test_500_twice_then_success():
    steps = [lambda b: error(500, "boom")] * 2
    with serving(script_of(*steps)) as server:
        lm = OpenAILM("m", server.base_url, backoff=FAST)
        [c] = lm.complete([ask("a")])
    assert c.text == "a#0"
    assert lm.retries == 2


def test_gives_up_after_max_retries_naming_url_status_and_error():
    with serving(lambda h, b: error(503, "overloaded")) as server:
        lm = OpenAILM("m", server.base_url, max_retries=3, backoff=FAST)
        with pytest.raises(LMError) as e:
            lm.complete([ask("a")])
    message = str(e.value)
    assert f"{server.base_url}/chat/completions" in message
    assert "HTTP 503" in message and "overloaded" in message and "3 retries" in message
    assert len(server.received) == 4


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_fail_at_once_naming_the_env_var(status):
    with serving(lambda h, b: error(status, "invalid api key")) as server:
        lm = OpenAILM("m", server.base_url, api_key="bad", backoff=FAST)
        with pytest.raises(LMError) as e:
            lm.complete([ask("a")])
    assert "OPENAI_API_KEY" in str(e.value) and "invalid api key" in str(e.value)
    assert len(server.received) == 1


def test_404_names_url_and_model():
    with serving(lambda h, b: error(404, "The model `nope` does not exist")) as server:
        lm = OpenAILM("nope", server.base_url, backoff=FAST)
        with pytest.raises(LMError) as e:
            lm.complete([ask("a")])
    message = str(e.value)
    assert f"{server.base_url}/chat/completions" in message and "'nope'" in message
    assert "/v1" in e.value.fix
    assert len(server.received) == 1


def test_other_client_errors_are_not_retried():
    with serving(lambda h, b: error(400, "max_tokens is too large")) as server:
        lm = OpenAILM("m", server.base_url, backoff=FAST)
        with pytest.raises(LMError, match="HTTP 400.*max_tokens is too large"):
            lm.complete([ask("a")])
    assert len(server.received) == 1


def test_a_200_without_choices_is_an_error():
    with serving(lambda h, b: (200, {"hello": 1}, {})) as server:
        with pytest.raises(LMError, match="no chat completion"):
            OpenAILM("m", server.base_url).complete([ask("a")])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast_with_default_settings():
    url = f"http://127.0.0.1:{free_port()}/v1"
    lm = OpenAILM("m", url)  # default backoff and retry window
    start = time.monotonic()
    with pytest.raises(LMError) as e:
        lm.complete([ask(str(i)) for i in range(5)])
    assert time.monotonic() - start < 5
    assert f"cannot reach {url}/chat/completions" in str(e.value)
    assert "server is running" in e.value.fix


def test_gives_up_on_a_server_that_went_away_after_the_window():
    with serving(script_of()) as server:
        lm = OpenAILM("m", server.base_url, max_retries=2, retry_window=0.3, backoff=FAST)
        lm.complete([ask("a")])
    with pytest.raises(LMError, match="gave up on .* retries; last error: ConnectError"):
        lm.complete([ask("b")])
    assert lm.retries > 2  # kept retrying for the whole window


def test_job_survives_a_server_restart_without_loss_or_duplicates():
    answered = []  # contents answered, by both servers
    first = {}

    def script(handler, body):
        content = body["messages"][-1]["content"]
        answered.append(content)
        if not first:  # the first answer: go down before sending it
            first["done"] = True
            handler.server.stop()
        return answer(body)

    server = Server(script)
    port = server.server_address[1]
    lm = OpenAILM("m", server.base_url, concurrency=2, max_retries=2, retry_window=30, backoff=FAST)
    restarted = []

    def restart_after_some_retries():
        deadline = time.monotonic() + 20
        while lm.retries < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        restarted.append(Server(script, port))

    controller = threading.Thread(target=restart_after_some_retries)
    controller.start()
    try:
        out = lm.complete([ask(str(i)) for i in range(12)])
    finally:
        controller.join()
        for s in restarted:
            s.stop()
    assert [c.text for c in out] == [f"{i}#0" for i in range(12)]
    assert sorted(answered, key=int) == [str(i) for i in range(12)]  # each exactly once
    assert lm.retries >= 3 and restarted


def test_works_when_called_inside_a_running_event_loop():
    with serving(script_of()) as server:
        lm = OpenAILM("m", server.base_url)

        async def main():
            return lm.complete([ask("a")])

        [c] = asyncio.run(main())
    assert c.text == "a#0"


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.invalid/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    lm = OpenAILM("m")
    assert lm.url == "http://example.invalid/v1/chat/completions"
    assert lm.api_key == "sk-env" and lm.name == "openai:m"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    lm = OpenAILM("m")
    assert lm.base_url == "https://api.openai.com/v1" and lm.api_key is None


def test_retry_after_accepts_seconds_and_http_dates():
    from instructkit.lm.openai import _retry_after

    assert _retry_after("2.5") == 2.5
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after("soon") is None and _retry_after(None) is None


def test_ctrl_c_carries_the_completions_that_did_arrive():
    import os
    import signal

    gate, answered = threading.Event(), threading.Event()

    def script(handler, body):
        if body["messages"][-1]["content"] == "slow":
            gate.wait(30)
        return answer(body)

    class Signals(OpenAILM):
        async def _complete_one(self, client, request):
            completion = await super()._complete_one(client, request)
            if request.messages[-1][1] == "fast":  # once the caller has stored it: the next step
                asyncio.get_running_loop().call_soon(answered.set)
            return completion

    def interrupt():
        if answered.wait(30):
            os.kill(os.getpid(), signal.SIGINT)

    # Ctrl+C as a terminal sends it, whatever an earlier test's library left on this process:
    # Python's own handler, and SIGINT not blocked in the main thread (a blocked SIGINT made
    # this test fail in the full suite); both printed on failure and restored afterwards
    print("SIGINT handler:", signal.getsignal(signal.SIGINT),
          "blocked:", signal.pthread_sigmask(signal.SIG_BLOCK, []))  # fmt: skip
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    with serving(script) as server:
        thread = threading.Thread(target=interrupt)
        thread.start()
        try:
            with pytest.raises(KeyboardInterrupt) as e:
                Signals("m", server.base_url, concurrency=2).complete([ask("slow"), ask("fast")])
        finally:
            gate.set()
            thread.join(30)
            signal.signal(signal.SIGINT, previous)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    assert {i: c.text for i, c in e.value.completed.items()} == {1: "fast#0"}
