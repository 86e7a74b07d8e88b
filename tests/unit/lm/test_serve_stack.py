"""`instructkit serve` on FastAPI + uvicorn, driven by the official `openai` client on 127.0.0.1.

A real uvicorn server runs on a thread on a free port; the tiny random model with two random
LoRA adapters makes the answers depend on the prompt and on the adapter.
"""

import json
import socket
import threading
import time

import httpx
import openai
import pytest
from adapters import save_random_lora

from instructkit.lm.base import ChatRequest
from instructkit.lm.scripted import ScriptedLM
from instructkit.lm.serve import start_server

TIMEOUT = 60  # seconds; bounds every call so that a broken server fails instead of hanging
PROMPTS = ["Hello world", "What is the capital of France?", "Two plus three", "Name a colour"]


def _adapter(tmp_path, seed):
    """A saved LoRA adapter over the tiny model with random (non-zero) weights."""
    return save_random_lora(tmp_path / f"adapter{seed}", seed=seed)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with the base model ('tiny') and two adapters ('a1', 'a2') beside it."""
    from instructkit.lm.local import LocalLM
    from instructkit.models import TINY_MODEL

    tmp = tmp_path_factory.mktemp("adapters")
    paths = {"a1": _adapter(tmp, 1), "a2": _adapter(tmp, 2)}
    base, views = LocalLM.load_with_adapters(TINY_MODEL, paths, template="chatml")
    with start_server({"tiny": base, **views}, port=0, max_wait_ms=20) as handle:
        handle.paths = paths
        yield handle


def client(handle, **kw):
    return openai.OpenAI(base_url=handle.base_url, api_key="none", timeout=TIMEOUT, **kw)


def ask(c, prompt, model="a1", **params):
    params = {"max_tokens": 8, "temperature": 0, **params}
    messages = [{"role": "user", "content": prompt}]
    return c.chat.completions.create(model=model, messages=messages, **params)


def health(handle):
    return httpx.get(f"{handle.url}/health", timeout=TIMEOUT).json()


def until(condition, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---------------------------------------------------------------- chat and completions


def test_models_lists_names_never_paths(served):
    ids = [m.id for m in client(served).models.list().data]
    assert ids == ["tiny", "a1", "a2"]
    assert not any(str(p) in json.dumps(ids) for p in served.paths.values())
    assert client(served).models.retrieve("a2").id == "a2"


def test_chat_streaming_gives_the_same_text_as_a_plain_answer(served):
    c = client(served)
    plain = ask(c, PROMPTS[1], max_tokens=12)
    assert plain.object == "chat.completion" and plain.model == "a1"
    assert plain.usage.completion_tokens <= 12 and plain.usage.prompt_tokens > 0
    chunks = list(ask(c, PROMPTS[1], max_tokens=12, stream=True))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices[0].delta.content]
    assert "".join(pieces) == plain.choices[0].message.content
    assert len(pieces) > 1  # token by token, not one block
    assert [ch.choices[0].finish_reason for ch in chunks][-1] == plain.choices[0].finish_reason
    assert all(ch.choices[0].finish_reason is None for ch in chunks[:-1])


def test_completions_streaming_and_not(served):
    c = client(served)
    plain = c.completions.create(
        model="a2", prompt="Once upon a time", max_tokens=10, temperature=0
    )
    assert plain.object == "text_completion" and plain.usage.completion_tokens <= 10
    stream = c.completions.create(
        model="a2", prompt="Once upon a time", max_tokens=10, temperature=0, stream=True
    )
    chunks = list(stream)
    assert "".join(ch.choices[0].text for ch in chunks) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    # a raw prompt is not wrapped in the chat template: it differs from the chat answer
    chat = ask(c, "Once upon a time", model="a2", max_tokens=10).choices[0].message.content
    assert plain.choices[0].text != chat
    # several prompts: choices in prompt order
    two = c.completions.create(
        model="a2", prompt=["Once upon a time", "x"], max_tokens=10, temperature=0
    )
    assert [ch.index for ch in two.choices] == [0, 1]
    assert two.choices[0].text == plain.choices[0].text


def test_n_choices_streaming_and_not(served):
    c = client(served)
    out = ask(c, PROMPTS[0], n=3, temperature=1.0, seed=4)
    assert [ch.index for ch in out.choices] == [0, 1, 2]
    texts: dict[int, str] = {}
    for ch in ask(c, PROMPTS[0], n=3, temperature=1.0, seed=4, stream=True):
        for choice in ch.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert [texts[i] for i in range(3)] == [ch.message.content for ch in out.choices]
    greedy = ask(c, PROMPTS[0], n=2)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    with pytest.raises(openai.BadRequestError) as e:
        ask(c, PROMPTS[0], n=500)
    assert e.value.body["param"] == "n"


def test_stream_usage_chunk_when_asked(served):
    chunks = list(ask(client(served), "hi", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_concurrent_clients_get_the_answers_of_sequential_ones(served):
    c = client(served)
    jobs = [(p, m) for p in PROMPTS for m in ("tiny", "a1", "a2")]
    sequential = [ask(c, p, m).choices[0].message.content for p, m in jobs]
    results: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def go(i):
        barrier.wait(TIMEOUT)
        stream = i % 2 == 0
        p, m = jobs[i]
        if stream:
            results[i] = "".join(
                ch.choices[0].delta.content or "" for ch in ask(c, p, m, stream=True)
            )
        else:
            results[i] = ask(c, p, m).choices[0].message.content

    before = len(served.worker.batch_sizes)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert results == sequential
    assert max(served.worker.batch_sizes[before:]) > 1  # they really were batched


def test_adapters_chosen_by_name_match_a_dedicated_model(served):
    from instructkit.lm.local import LocalLM
    from instructkit.models import TINY_MODEL

    c = client(served)
    answers = {m: [ask(c, p, m).choices[0].message.content for p in PROMPTS] for m in served.paths}
    base = [ask(c, p, "tiny").choices[0].message.content for p in PROMPTS]
    assert answers["a1"] != base and answers["a2"] != base and answers["a1"] != answers["a2"]
    own = LocalLM.load(TINY_MODEL, adapter=served.paths["a2"], template="chatml")
    requests = [ChatRequest((("user", p),), max_tokens=8) for p in PROMPTS]
    assert answers["a2"] == [c.text for c in own.complete(requests)]
    # a request without 'model' gets the first served model, the base
    r = httpx.post(
        f"{served.base_url}/chat/completions",
        json={
            "messages": [{"role": "user", "content": PROMPTS[0]}],
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=TIMEOUT,
    )
    assert r.json()["choices"][0]["message"]["content"] == base[0]


# ---------------------------------------------------------------- faults


def test_streaming_delivers_text_while_generating_and_a_disconnect_stops_it(served):
    """Pieces arrive before generation ends; a client that leaves stops its generation."""
    model = served.worker.lms["a1"].model
    steps, gate = [], threading.Event()

    def slow_step(module, args, kwargs):  # from the 5th decode step on, wait for the test
        steps.append(1)
        if len(steps) >= 5:
            gate.wait(TIMEOUT)

    stopped = served.worker.stopped
    hook = model.register_forward_pre_hook(slow_step, with_kwargs=True)
    try:
        stream = ask(client(served), PROMPTS[2], max_tokens=400, stream=True)
        pieces = []
        for ch in stream:
            if ch.choices[0].delta.content:
                pieces.append(ch.choices[0].delta.content)
                break
        assert pieces and len(steps) < 10  # the text came while the model was still stepping
        stream.close()  # the client goes away mid-stream
        until(lambda: served.worker.abandoned >= 1, "the server to notice the disconnect")
        gate.set()
        until(lambda: served.worker.stopped == stopped + 1, "the generation to stop")
    finally:
        gate.set()
        hook.remove()
    assert len(steps) < 30  # stopped after a step or two, not after 400 tokens
    assert health(served)["status"] == "ok"
    assert ask(client(served), PROMPTS[0]).choices[0].message.content  # still serving


def test_malformed_and_mistyped_bodies_get_openai_errors(served):
    r = httpx.post(
        f"{served.base_url}/chat/completions", content=b'{"messages": [', timeout=TIMEOUT
    )
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.json()["error"]["code"] == "invalid_json"
    c = client(served)
    with pytest.raises(openai.BadRequestError) as e:
        ask(c, "hi", temperature="hot")
    assert e.value.status_code == 400 and e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="a1", messages=[{"role": "robot", "content": "x"}])
    assert e.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.NotFoundError) as e:
        ask(c, "hi", model="gpt-9")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-9")


def test_oversized_bodies_get_413_without_being_read():
    with start_server(ScriptedLM(lambda r: "ok"), port=0, model_name="m", max_body_bytes=500) as h:
        c = openai.OpenAI(base_url=h.base_url, api_key="none", timeout=TIMEOUT, max_retries=0)
        with pytest.raises(openai.APIStatusError) as e:
            ask(c, "x" * 1000, model="m")
        assert e.value.status_code == 413 and e.value.body["code"] == "too_large"
        # a client that announces a huge body and sends none: answered at once, not awaited
        with socket.create_connection(("127.0.0.1", h.port), timeout=TIMEOUT) as s:
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
            )
            head = s.recv(65536).decode()
        assert head.startswith("HTTP/1.1 413")
        assert ask(c, "small", model="m").choices[0].message.content == "ok"


def test_api_key_is_required_when_set():
    with start_server(ScriptedLM(lambda r: "ok"), port=0, model_name="m", api_key="s3cret") as h:
        wrong = openai.OpenAI(base_url=h.base_url, api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            ask(wrong, "hi", model="m")
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
        r = httpx.get(f"{h.base_url}/models", timeout=TIMEOUT)  # no key at all
        assert r.status_code == 401 and set(r.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        right = openai.OpenAI(base_url=h.base_url, api_key="s3cret", max_retries=0)
        assert ask(right, "hi", model="m").choices[0].message.content == "ok"
        assert httpx.get(f"{h.url}/health", timeout=TIMEOUT).status_code == 200  # open


def test_a_failing_stream_ends_with_an_error_event():
    def script(request):
        raise RuntimeError("model exploded")

    with start_server(ScriptedLM(script), port=0, model_name="m") as h:
        with httpx.stream(
            "POST",
            f"{h.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "stream": True},
            timeout=TIMEOUT,
        ) as r:
            lines = [line for line in r.iter_lines() if line]
        assert r.status_code == 200 and lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))
        assert "model exploded" in error["error"]["message"]
