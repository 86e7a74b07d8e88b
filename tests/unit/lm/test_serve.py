import http.client
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from instructkit.cli.main import _Group
from instructkit.cli.serve import serve
from instructkit.lm.base import DEFAULT_BATCH, ChatRequest
from instructkit.lm.scripted import ScriptedLM
from instructkit.lm.serve import (
    BatchWorker,
    RequestError,
    parse_chat_request,
    run_server,
    start_server,
)

TIMEOUT = 60  # seconds; bounds every HTTP call so a broken server fails instead of hanging


class RecordingLM:
    """Wraps an LM; records each batch and the thread that called the model."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self.batches: list[list[ChatRequest]] = []
        self.threads: set[str] = set()

    def complete(self, requests, *, progress=False):
        self.batches.append(list(requests))
        self.threads.add(threading.current_thread().name)
        return self.inner.complete(requests)


def echo(request: ChatRequest) -> str:
    return "echo: " + request.messages[-1][1]


def call(url, body=None, *, method=None, raw=None):
    """(status, headers, json) of one HTTP call; HTTP errors are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def chat(base, content="hi", **params):
    return call(
        f"{base}/chat/completions", {"messages": [{"role": "user", "content": content}], **params}
    )


@pytest.fixture()
def echo_server():
    lm = RecordingLM(ScriptedLM(echo, name="echo"))
    with start_server(lm, port=0, model_name="echo") as handle:
        handle.lm = lm
        yield handle


# ---------------------------------------------------------------- request parsing


def test_parse_chat_request_maps_openai_fields():
    r = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "max_tokens": 7,
            "n": 2,
            "stop": "\n",
            "seed": 3,
        },
        "m",
    )
    assert r.messages == (("system", "be brief"), ("user", "a\nb"))
    assert (r.temperature, r.top_p, r.max_tokens, r.n, r.stop, r.seed) == (
        0.5,
        0.9,
        7,
        2,
        ("\n",),
        3,
    )
    defaults = parse_chat_request({"messages": [{"role": "user", "content": "x"}]}, "m")
    assert (defaults.temperature, defaults.top_p, defaults.n, defaults.max_tokens) == (1, 1, 1, 256)
    body = {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5}
    assert parse_chat_request(body, "m").max_tokens == 5


@pytest.mark.parametrize(
    "body, param",
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools",
        ),
    ],
)
def test_parse_chat_request_names_the_bad_field(body, param):
    with pytest.raises(RequestError) as e:
        parse_chat_request(body, "m")
    assert e.value.status == 400 and e.value.param == param and f"'{param}'" in e.value.message


# ---------------------------------------------------------------- HTTP over loopback


def test_models_health_and_chat_schema(echo_server):
    base = echo_server.base_url
    assert echo_server.url == f"http://127.0.0.1:{echo_server.port}"
    status, _, models = call(f"{base}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["echo"]
    assert call(f"{base}/models/echo")[2]["id"] == "echo"
    status, _, out = chat(base, "hello there", model="echo")
    assert status == 200
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and out["model"] == "echo"
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # ScriptedLM counts words: 2 in the prompt, 3 in the answer
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    health = call(f"{echo_server.url}/health")[2]
    assert health == {
        "status": "ok",
        "model": "echo",
        "models": ["echo"],
        "requests": 1,
        "batches": 1,
        "abandoned": 0,
        "dropped": 0,
        "stopped": 0,
    }


def test_n_choices(echo_server):
    out = chat(echo_server.base_url, "x", n=3)[2]
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in out["choices"]} == {"echo: x"}


@pytest.mark.parametrize(
    "path, kwargs, status, needle",
    [
        ("/v1/chat/completions", {"raw": b"{not json"}, 400, "not valid JSON"),
        ("/v1/chat/completions", {"body": {"model": "echo"}}, 400, "'messages' is required"),
        (
            "/v1/chat/completions",
            {"body": {"messages": [{"role": "user", "content": "x"}], "top_p": "all"}},
            400,
            "'top_p'",
        ),
        (
            "/v1/chat/completions",
            {"body": {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}},
            400,
            "'stream'",
        ),
        (
            "/v1/chat/completions",
            {"body": {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}},
            404,
            "gpt-9",
        ),
        ("/v1/models/gpt-9", {}, 404, "gpt-9"),
        ("/v1/completions", {"body": {}}, 400, "'prompt' is required"),
        ("/v1/completions", {"body": {"prompt": "x", "model": "gpt-9"}}, 404, "gpt-9"),
        ("/nowhere", {}, 404, "no such endpoint"),
        ("/v1/chat/completions", {}, 405, "use POST"),
        ("/v1/models", {"body": {}}, 405, "use GET"),
    ],
)
def test_errors_use_openai_schema(echo_server, path, kwargs, status, needle):
    got, headers, out = call(echo_server.url + path, **kwargs)
    assert got == status
    assert set(out["error"]) == {"message", "type", "param", "code"}
    assert needle in out["error"]["message"]
    if status == 405:
        assert headers["Allow"] in {"GET", "POST"}


def test_generation_failure_is_500_and_server_keeps_serving():
    def script(request):
        if "boom" in request.messages[-1][1]:
            raise RuntimeError("model exploded")
        return "fine"

    with start_server(ScriptedLM(script), port=0, model_name="m") as handle:
        status, _, out = chat(handle.base_url, "boom")
        assert status == 500 and out["error"]["type"] == "server_error"
        assert "model exploded" in out["error"]["message"]
        assert chat(handle.base_url, "ok")[2]["choices"][0]["message"]["content"] == "fine"


def _fire(base, bodies):
    """POST every body at once from its own thread; return the responses in order."""
    results = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def go(i):
        barrier.wait(TIMEOUT)
        results[i] = call(f"{base}/chat/completions", bodies[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    return results


def _body(content, **params):
    return {"messages": [{"role": "user", "content": content}], **params}


def test_concurrent_requests_are_batched_and_routed_back():
    lm = RecordingLM(ScriptedLM(echo))
    # A long wait lets the batch fill; it closes as soon as 8 requests are in.
    with start_server(lm, port=0, max_batch=8, max_wait_ms=2000) as handle:
        results = _fire(handle.base_url, [_body(f"prompt {i}") for i in range(8)])
    for i, (status, _, out) in enumerate(results):
        assert status == 200 and out["choices"][0]["message"]["content"] == f"echo: prompt {i}"
    sizes = [len(b) for b in lm.batches]
    assert sum(sizes) == 8 and max(sizes) > 1
    assert lm.threads == {"instructkit-generate"}  # the model is only called by the worker


def test_batches_respect_max_batch_and_sampling_params():
    lm = RecordingLM(ScriptedLM(echo))
    bodies = [_body(f"p{i}", temperature=0.5 * (i % 2), max_tokens=8) for i in range(8)]
    with start_server(lm, port=0, max_batch=3, max_wait_ms=200) as handle:
        results = _fire(handle.base_url, bodies)
    assert [r[2]["choices"][0]["message"]["content"] for r in results] == [
        f"echo: p{i}" for i in range(8)
    ]
    assert sum(len(b) for b in lm.batches) == 8
    for batch in lm.batches:
        assert 1 <= len(batch) <= 3
        assert len({r.params()["temperature"] for r in batch}) == 1


def test_worker_isolates_a_failing_request_and_refuses_after_stop():
    def script(request):
        if request.messages[-1][1] == "bad":
            raise ValueError("bad prompt")
        return "good"

    lm = RecordingLM(ScriptedLM(script))
    worker = BatchWorker(lm, max_batch=2, max_wait_ms=5000)
    good = worker.submit(ChatRequest((("user", "ok"),)))
    bad = worker.submit(ChatRequest((("user", "bad"),)))
    assert good.result(TIMEOUT).text == "good"
    with pytest.raises(ValueError, match="bad prompt"):
        bad.result(TIMEOUT)
    assert [len(b) for b in lm.batches] == [2, 1, 1]  # batch failed, then retried one by one
    worker.stop()
    with pytest.raises(RequestError, match="shutting down"):
        worker.submit(ChatRequest((("user", "ok"),))).result(TIMEOUT)


def test_stop_closes_the_port():
    handle = start_server(ScriptedLM(echo), port=0)
    assert call(f"{handle.url}/health")[0] == 200
    handle.stop()
    handle.stop()  # idempotent
    assert not handle.worker._thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", handle.port), 1):
        pass


def test_run_server_stops_cleanly_on_sigterm():
    urls: list[str] = []
    ready = threading.Event()
    seen = {}

    def client():
        try:
            ready.wait(TIMEOUT)
            seen["health"] = call(f"{urls[0].split(' ')[0]}/health")[0]
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    def announce(line):
        if not urls:
            urls.append(line.split(" at ", 1)[1])
            ready.set()

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=client)
    thread.start()
    run_server(ScriptedLM(echo), "127.0.0.1", 0, "m", announce=announce)  # blocks until SIGTERM
    thread.join(TIMEOUT)
    assert seen["health"] == 200
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- a real local model


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    """LocalLMs over the tiny random model: the base, and the base with a non-zero LoRA."""
    from adapters import save_random_lora

    from instructkit.lm.local import LocalLM
    from instructkit.models import TINY_MODEL

    adapter = save_random_lora(tmp_path_factory.mktemp("lora") / "adapter", seed=1)
    base = LocalLM.load(TINY_MODEL, template="chatml")
    tuned = LocalLM.load(TINY_MODEL, adapter=str(adapter), template="chatml")
    return base, tuned, adapter


def test_local_model_schema_n_and_stop(tiny_lms):
    base, _, _ = tiny_lms
    with start_server(base, port=0, model_name="tiny") as handle:
        status, _, out = chat(handle.base_url, "Hello world", max_tokens=6)
        assert status == 200 and out["model"] == "tiny"
        text = out["choices"][0]["message"]["content"]
        usage = out["usage"]
        assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 6
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

        out = chat(handle.base_url, "Hello world", max_tokens=6, n=2, temperature=1.0, seed=0)[2]
        assert len(out["choices"]) == 2 and out["usage"]["completion_tokens"] <= 12

        # Sampled with a seed (the tiny model's greedy text is all newlines): the same request
        # gives the same text, so a stop string cut from it must end the answer right before it.
        sample = {"max_tokens": 12, "temperature": 1.0, "seed": 3}
        text = chat(handle.base_url, "Hello world", **sample)[2]["choices"][0]["message"]["content"]
        assert (
            chat(handle.base_url, "Hello world", **sample)[2]["choices"][0]["message"]["content"]
            == text
        )
        k = next(k for k in range(1, len(text)) if text.find(text[k:]) == k)
        out = chat(handle.base_url, "Hello world", **sample, stop=[text[k:]])[2]
        assert out["choices"][0]["message"]["content"] == text[:k]
        assert out["choices"][0]["finish_reason"] == "stop"


def test_served_adapter_changes_outputs(tiny_lms):
    base, tuned, _ = tiny_lms
    prompts = ["Hello world", "What is the capital of France?", "Two plus three"]
    answers = {}
    for label, lm in (("base", base), ("tuned", tuned)):
        with start_server(lm, port=0, model_name=label) as handle:
            answers[label] = [
                chat(handle.base_url, p, model=label, max_tokens=8, temperature=0)[2]["choices"][0][
                    "message"
                ]["content"]
                for p in prompts
            ]
    assert answers["base"] != answers["tuned"]
    assert answers["base"] == [
        c.text for c in base.complete([ChatRequest((("user", p),), max_tokens=8) for p in prompts])
    ]


# ---------------------------------------------------------------- CLI


def _cli(*args):
    return CliRunner().invoke(_Group(commands=[serve]), ["serve", *args])


def test_cli_help():
    out = _cli("--help").output
    flags = ("--adapter", "--host", "--port", "--template", "--max-batch", "--name", "--api-key")
    for flag in (*flags, "--max-body-bytes", "NAME=DIR"):
        assert flag in out
    assert f"[default: {DEFAULT_BATCH};" in " ".join(out.split())


def test_one_default_batch_for_local_generation_and_serving():
    import inspect

    from instructkit.lm.local import LocalLM

    worker = BatchWorker(ScriptedLM(echo))
    worker.stop()
    assert worker.max_batch == DEFAULT_BATCH == 32
    assert inspect.signature(LocalLM).parameters["batch_size"].default == DEFAULT_BATCH
    assert inspect.signature(LocalLM.load).parameters["batch_size"].default == DEFAULT_BATCH
    for f in (start_server, run_server):
        assert inspect.signature(f).parameters["max_batch"].default == DEFAULT_BATCH


def test_cli_bad_adapter_path(tmp_path):
    r = _cli("tiny-random-llama", "--adapter", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "does not exist" in r.output
    r = _cli("tiny-random-llama", "--adapter", str(tmp_path))
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and "adapter_config.json" in r.output
    r = _cli("tiny-random-llama", "--adapter", f"tuned={tmp_path / 'missing'}")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = _cli("tiny-random-llama", "--adapter", f"tuned={tmp_path}")
    assert r.exit_code == 1 and "adapter_config.json" in r.output


def test_cli_refuses_ambiguous_adapter_names_before_loading(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    r = _cli("tiny-random-llama", "--adapter", str(tmp_path), "--adapter", f"b={tmp_path}")
    assert r.exit_code == 2 and "NAME=DIR" in r.output
    r = _cli("tiny-random-llama", "--adapter", f"tiny-random-llama={tmp_path}")
    assert r.exit_code == 2 and "MODEL's name" in r.output
    r = _cli("tiny-random-llama", "--adapter", f"=={tmp_path}")
    assert r.exit_code == 2


def test_only_loopback_is_quiet():
    from instructkit.lm.serve import exposure_warning

    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        assert exposure_warning(host, None) is None
    assert "set --api-key" in exposure_warning("0.0.0.0", None)
    assert "with the API key" in exposure_warning("192.168.1.5", "k")


def test_stop_finishes_the_running_batch_and_fails_queued_requests():
    entered, release = threading.Event(), threading.Event()

    def script(request):
        entered.set()
        release.wait(TIMEOUT)
        return "done"

    worker = BatchWorker(ScriptedLM(script), max_batch=1, max_wait_ms=0)
    running = worker.submit(ChatRequest((("user", "a"),)))
    queued = worker.submit(ChatRequest((("user", "b"),)))
    assert entered.wait(TIMEOUT)  # the worker is generating "a"; "b" waits in the queue
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert worker._stopped.wait(TIMEOUT)
    release.set()
    stopper.join(TIMEOUT)
    assert running.result(TIMEOUT).text == "done"
    with pytest.raises(RequestError) as e:
        queued.result(TIMEOUT)
    assert e.value.status == 503


def test_greedy_requests_batch_across_n_and_seeded_samples_run_alone():
    lm = RecordingLM(ScriptedLM(echo))
    worker = BatchWorker(lm, max_batch=8, max_wait_ms=300)
    msgs = (("user", "x"),)
    requests = [
        ChatRequest(msgs),
        ChatRequest(msgs, temperature=0.7, seed=1),
        ChatRequest(msgs, n=2, top_p=0.5),
        ChatRequest(msgs, temperature=0.7, seed=1),
        ChatRequest(msgs, seed=5),
    ]
    futures = [worker.submit(r) for r in requests]
    assert [len(f.result(TIMEOUT).texts) for f in futures] == [1, 1, 2, 1, 1]
    worker.stop()
    assert sorted(len(b) for b in lm.batches) == [1, 1, 3]
    [greedy] = [b for b in lm.batches if len(b) == 3]
    assert all(r.temperature == 0 for r in greedy)


def test_openai_backend_round_trip():
    """instructkit's own OpenAI client (httpx, keep-alive, 8 concurrent) against the server."""
    from instructkit.errors import LMError
    from instructkit.lm.openai import OpenAILM

    lm = RecordingLM(ScriptedLM(echo))
    with start_server(lm, port=0, model_name="echo", max_wait_ms=200) as handle:
        client = OpenAILM("echo", base_url=handle.base_url, concurrency=8)
        requests = [ChatRequest((("user", f"q{i}"),), n=1 + i % 2) for i in range(8)]
        got = client.complete(requests)
        assert [c.texts for c in got] == [[f"echo: q{i}"] * (1 + i % 2) for i in range(8)]
        assert max(len(b) for b in lm.batches) > 1
        with pytest.raises(LMError, match="not served"):
            OpenAILM("gpt-9", base_url=handle.base_url, max_retries=0).complete(requests[:1])


def test_worker_waits_for_the_clients_of_the_last_batch_only():
    lm = RecordingLM(ScriptedLM(echo))
    worker = BatchWorker(lm, max_batch=4, max_wait_ms=300)
    ask = lambda text: worker.submit(ChatRequest((("user", text),)))  # noqa: E731
    [f.result(TIMEOUT) for f in [ask(f"a{i}") for i in range(3)]]  # the first waits to fill
    # From now on a batch would wait ten minutes to fill up to max_batch (4). The last batch
    # held 3 clients, so it waits for 3, even when two of them come after the first is taken;
    # then it runs without waiting for a 4th (or the results below would time out).
    worker.max_wait_s = 600
    second = [ask("b0")]
    _until_taken(worker)
    second += [ask("b1"), ask("b2")]
    assert [f.result(TIMEOUT).text for f in second] == ["echo: b0", "echo: b1", "echo: b2"]
    assert [len(b) for b in lm.batches] == [3, 3]
    worker.stop(TIMEOUT)


def test_worker_joins_the_returning_clients_with_those_that_queued_meanwhile():
    # 4 clients: 2 in the first batch, 2 queued while it runs. When it ends, the next batch
    # expects 4 (2 returning + 2 queued) instead of running the 2 queued alone, which would
    # lock the clients into two alternating half-full batches.
    gate = threading.Event()
    lm = RecordingLM(ScriptedLM(lambda r: gate.wait(TIMEOUT) and echo(r)))
    worker = BatchWorker(lm, max_batch=4, max_wait_ms=300)
    ask = lambda text: worker.submit(ChatRequest((("user", text),)))  # noqa: E731
    a = [ask("a0"), ask("a1")]
    deadline = time.monotonic() + TIMEOUT
    while not lm.batches and time.monotonic() < deadline:
        time.sleep(0.001)  # until the first batch (a0, a1) runs, after its 300 ms wait
    worker.max_wait_s = 600
    b = [ask("b0"), ask("b1")]
    gate.set()
    [f.result(TIMEOUT) for f in a]
    a = [ask("a2"), ask("a3")]  # the first batch's clients come back
    assert [f.result(TIMEOUT).text for f in a + b] == [
        "echo: a2",
        "echo: a3",
        "echo: b0",
        "echo: b1",
    ]
    assert [len(x) for x in lm.batches] == [2, 4]
    worker.stop(TIMEOUT)


def _until_taken(worker):
    deadline = time.monotonic() + TIMEOUT
    while worker._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.001)  # until the worker has taken the queued request


def test_worker_does_not_hold_a_lone_client():
    lm = RecordingLM(ScriptedLM(echo))
    worker = BatchWorker(lm, max_batch=4, max_wait_ms=50)
    assert worker.submit(ChatRequest((("user", "0"),))).result(TIMEOUT).text == "echo: 0"
    worker.max_wait_s = 600  # the first batch waited 50 ms and ran alone; later ones run at once
    for i in range(1, 6):  # one client, one request at a time
        assert worker.submit(ChatRequest((("user", str(i)),))).result(TIMEOUT).text == f"echo: {i}"
    assert [len(b) for b in lm.batches] == [1] * 6
    worker.stop(TIMEOUT)


# ---------------------------------------------------------------- abandoned requests


def _until(condition, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _post_and_time_out(handle, content, **params):
    """A real HTTP client that sends a chat request, gives up after 0.3 s and disconnects."""
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=0.3)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(_body(content, **params)),
        {"Content-Type": "application/json"},
    )
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()


def test_a_queued_request_whose_client_left_is_dropped_not_generated():
    gate = threading.Event()

    def script(request):
        gate.wait(TIMEOUT)
        return echo(request)

    lm = RecordingLM(ScriptedLM(script))
    with start_server(lm, port=0, max_batch=4, max_wait_ms=0) as handle:
        first = threading.Thread(target=lambda: chat(handle.base_url, "a"))
        first.start()
        _until(lambda: lm.batches, "the first batch to start")
        _post_and_time_out(handle, "b")  # queued behind "a", then its client is gone
        worker = handle.worker
        _until(lambda: worker.abandoned == 1, "the server to notice the disconnect")
        gate.set()
        first.join(TIMEOUT)
        _until(lambda: worker.dropped == 1, "the request to be dropped")
        health = call(f"{handle.url}/health")[2]
    assert (health["abandoned"], health["dropped"], health["stopped"]) == (1, 1, 0)
    assert health["requests"] == 1
    assert [[r.messages[-1][1] for r in b] for b in lm.batches] == [["a"]]  # "b" never ran


def test_generation_stops_when_the_client_times_out():
    """The judge's failure: a client that times out must not leave the server generating."""
    from instructkit.errors import LMError
    from instructkit.lm.local import LocalLM
    from instructkit.lm.openai import OpenAILM
    from instructkit.models import TINY_MODEL

    lm = LocalLM.load(TINY_MODEL, template="chatml")
    steps, gate = [], threading.Event()

    def slow_step(module, args, kwargs):  # after 3 decode steps, wait for the test
        steps.append(1)
        if len(steps) == 3:
            gate.wait(TIMEOUT)

    hook = lm.model.register_forward_pre_hook(slow_step, with_kwargs=True)
    try:
        with start_server(lm, port=0, model_name="tiny", max_wait_ms=0) as handle:
            client = OpenAILM("tiny", base_url=handle.base_url, timeout=0.3, max_retries=0)
            with pytest.raises(LMError, match="timed out"):
                client.complete([ChatRequest((("user", "Hello"),), max_tokens=500)])
            worker = handle.worker
            _until(lambda: worker.abandoned == 1, "the server to notice the disconnect")
            gate.set()
            _until(lambda: worker.stopped == 1, "the generation to stop")
            health = call(f"{handle.url}/health")[2]
    finally:
        hook.remove()
    assert (health["abandoned"], health["dropped"], health["stopped"]) == (1, 0, 1)
    assert len(steps) < 20  # stopped after a step or two, not after 500 tokens
