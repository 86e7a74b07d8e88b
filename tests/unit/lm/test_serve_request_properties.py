"""Property: whatever body a client sends, the server answers 200 or a 4xx in OpenAI's error
schema; never a 500, never a hang (hypothesis, through the ASGI app in process)."""

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructkit.lm.batching import BatchWorker
from instructkit.lm.scripted import ScriptedLM
from instructkit.lm.serve import build_app

PATHS = ["/v1/chat/completions", "/v1/completions"]
KEYS = [
    "model",
    "messages",
    "prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "tools",
    "logprobs",
    "presence_penalty",
    "response_format",
    "echo",
    "suffix",
    "best_of",
]

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "system", "assistant", "developer", "tool", ""])
            | json_values,
            "content": st.text(max_size=10)
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": json_values}))
            | json_values,
        },
    ),
    max_size=3,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        **{key: json_values for key in KEYS},
        "model": st.sampled_from(["m", "other"]) | json_values,
        "messages": messages,
        "prompt": st.text(max_size=10) | st.lists(st.text(max_size=5), max_size=3) | json_values,
        "n": st.integers(-2, 200),
        "stream": st.booleans(),
    },
)
bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_valid.map(lambda v: json.dumps(v).encode())
)


@pytest.fixture(scope="module")
def http():
    worker = BatchWorker({"m": ScriptedLM(lambda r: "ok")}, max_batch=4, max_wait_ms=0)
    with TestClient(build_app(worker, max_body_bytes=4096), raise_server_exceptions=False) as c:
        yield c
    worker.stop()


@settings(
    max_examples=300,
    deadline=timedelta(seconds=5),  # a hang fails the example instead of the whole run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), body=bodies)
def test_any_body_gets_200_or_a_4xx_in_openai_schema(http, path, body):
    r = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 200:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
        assert error["type"] == "invalid_request_error"
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")
    else:
        assert r.json()["choices"]
