"""The scale-out path: synth and an LLM judge through the `openai` backend against
`instructkit serve`, the stand-in for vLLM / SGLang / llama.cpp server / TGI (issue 16 item 5).

One server answers like a capable model (a scripted LM behind the real HTTP server), so the
outputs can be checked; the other runs the tiny random model, so the real generation path
(batching, chat template, stop strings) is exercised end to end.
"""

import json

import httpx
import pytest

from instructkit.evaluate.judge import compare, grade
from instructkit.lm import build_lm
from instructkit.lm.scripted import ScriptedLM
from instructkit.lm.serve import start_server
from instructkit.synth.evol_instruct import EvolConfig, run_evol
from instructkit.synth.seeds import load_seed_tasks
from instructkit.synth.self_instruct import SelfInstructConfig, run_self_instruct

SEEDS = [
    {"id": "a", "instruction": "Explain gravity."},
    {"id": "b", "instruction": "Name three primary colors."},
]


def capable(request) -> str:
    """Answers in the shapes the synth prompts and the judges ask for."""
    prompt = request.messages[-1][1]
    if prompt.startswith("Come up with a series"):
        return (
            "9. Describe the water cycle to a child.\n"
            "10. Classify whether the sentence is a question.\n"
            "11. Summarize the plot of a famous novel."
        )
    if prompt.startswith("Can the following"):
        return "Yes" if "Classify" in prompt[-200:] else "No"
    if prompt.startswith("Given a classification"):
        return "Class label: Yes\nInput: Is it raining?\nClass label: No\nInput: It rains."
    if "Rating: [[" in prompt or "[[rating]]" in prompt.lower():
        return "The answer is correct and clear. Rating: [[7]]"
    if "[[A]]" in prompt:
        return "Assistant A is more helpful. [[A]]"
    if "I want you act as a Prompt Rewriter" in prompt or "#Rewritten Prompt#" in prompt:
        return prompt.split("#The Given Prompt#:")[-1].split("#")[0].strip() + " Give examples."
    return "Example 1\nInput: some text\nOutput: a clear and complete answer to the task"


@pytest.fixture()
def capable_server():
    with start_server(ScriptedLM(capable), port=0, model_name="capable", max_wait_ms=5) as h:
        yield h


def test_self_instruct_evol_and_judges_through_the_openai_backend(capable_server, tmp_path):
    lm = build_lm("openai:capable", base_url=capable_server.base_url, concurrency=4)
    cfg = SelfInstructConfig(num_instructions=2, prompts_per_round=1, max_tokens=64)
    result = run_self_instruct(
        cfg, lm, load_seed_tasks().tasks, tmp_path / "si.jsonl", progress=False
    )
    rows = [json.loads(line) for line in (tmp_path / "si.jsonl").read_text().splitlines()]
    assert result.reached_target and len(rows) >= 2

    evol = run_evol(
        EvolConfig(rounds=1, max_tokens=64), lm, SEEDS, tmp_path / "evol.jsonl", progress=False
    )
    assert evol.n_kept + evol.n_eliminated == len(SEEDS)

    graded = grade(lm, [("What is 2+2?", "4"), ("Capital of France?", "Paris")], progress=False)
    assert [g.score for g in graded.grades] == [7.0, 7.0]
    pairwise = compare(lm, [("Q?", "good answer")], [("Q?", "bad answer")], progress=False)
    assert len(pairwise.outcomes) == 1  # both orders asked (A won both: a position bias)
    health = httpx.get(f"{capable_server.url}/health", timeout=30).json()
    assert health["requests"] >= 6 and health["abandoned"] == 0


def test_synth_and_judge_against_a_served_tiny_model(tmp_path):
    from instructkit.lm.local import LocalLM
    from instructkit.models import TINY_MODEL

    local = LocalLM.load(TINY_MODEL, template="chatml")
    with start_server(local, port=0, model_name="tiny", max_wait_ms=5) as handle:
        lm = build_lm("openai:tiny", base_url=handle.base_url, concurrency=4)
        evol = run_evol(
            EvolConfig(rounds=1, max_tokens=12), lm, SEEDS, tmp_path / "e.jsonl", progress=False
        )
        assert evol.n_kept + evol.n_eliminated == len(SEEDS)
        graded = grade(lm, [("What is 2+2?", "4")], max_tokens=12, progress=False)
        assert len(graded.grades) == 1  # the tiny model's verdict is noise, but it came back
        assert httpx.get(f"{handle.url}/health", timeout=30).json()["requests"] >= 5


def test_cli_serves_named_adapters_beside_the_base(tmp_path):
    """`instructkit serve MODEL --adapter NAME=DIR --api-key K` as a user runs it."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import openai
    from adapters import save_random_lora

    save_random_lora(tmp_path / "adapter", seed=3, targets=("q_proj", "v_proj"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "instructkit", "serve", "tiny-random-llama"]
    command += ["--adapter", f"tuned={tmp_path / 'adapter'}", "--port", str(port)]
    command += ["--template", "chatml", "--api-key", "k"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", timeout=60)
        deadline = time.monotonic() + 90
        while True:
            try:
                ids = [m.id for m in client.models.list().data]
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.2)
        assert ids == ["tiny-random-llama", "tuned"]
        texts = {
            m: client.chat.completions.create(
                model=m,
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=6,
                temperature=0,
            )
            .choices[0]
            .message.content
            for m in ids
        }
        assert texts["tuned"] != texts["tiny-random-llama"]
    finally:
        server.send_signal(signal.SIGTERM)
        out = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, out
    assert "serving 'tiny-random-llama', 'tuned' at http://127.0.0.1:" in out
    assert str(tmp_path) not in out.split("serving", 1)[1]  # served ids are names, not paths
