"""The openai backend against a real `instructkit serve` process restarted mid-job."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from instructkit.lm.base import ChatRequest
from instructkit.lm.openai import OpenAILM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instructkit",
            "serve",
            "tiny-random-llama",
            "--port",
            str(port),
            "--template",
            "chatml",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return json.loads(r.read())
    except OSError:
        return None


def wait_until(cond, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_job_survives_server_restart(tmp_path):
    port = free_port()
    requests = [
        ChatRequest.from_messages(
            [{"role": "user", "content": f"Item {i}: say hi"}], max_tokens=12, temperature=0.0
        )
        for i in range(40)
    ]
    server = start(port)
    try:
        assert wait_until(lambda: health(port) is not None), "server did not start"
        reference = OpenAILM(
            "tiny-random-llama", base_url=f"http://127.0.0.1:{port}/v1", concurrency=2
        ).complete(requests[:5])
        client = OpenAILM(
            "tiny-random-llama",
            base_url=f"http://127.0.0.1:{port}/v1",
            concurrency=2,
            retry_window=120,
        )
        result: dict = {}
        job = threading.Thread(target=lambda: result.update(out=client.complete(requests)))
        job.start()
        assert wait_until(lambda: (health(port) or {}).get("requests", 0) >= 10, 60)
        server.send_signal(signal.SIGTERM)  # stop mid-job
        server.wait(timeout=30)
        time.sleep(1.0)
        server = start(port)  # and restart on the same port
        job.join(timeout=180)
        assert not job.is_alive(), "job did not finish after the restart"
        out = result["out"]
        assert len(out) == 40 and all(c.texts for c in out)
        assert client.retries > 0  # it really went through the outage
        # greedy answers are deterministic: the first five equal the uninterrupted run
        assert [c.text for c in out[:5]] == [c.text for c in reference]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
