"""End-to-end `instructkit synth self-instruct` with a scripted LM in place of build_lm."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from scripted_synth import WORDS, self_instruct_answer

import instructkit.lm
from instructkit.cli.main import cli
from instructkit.cli.synth import synth
from instructkit.lm.scripted import ScriptedLM


def fake_answer(request) -> str:
    return self_instruct_answer(request, extra="\n12. Plot a graph.")


@pytest.fixture(autouse=True)
def scripted_lm(monkeypatch):
    """`--lm` builds a ScriptedLM; `synth` is registered if the lead has not done it yet."""
    specs = []

    def build_lm(spec, *, base_url=None, api_key=None, cache=None, **kw):
        specs.append((spec, base_url))
        return ScriptedLM(fake_answer, name=spec)

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm, raising=False)
    if "synth" not in cli.commands:
        monkeypatch.setitem(cli.commands, "synth", synth)
    return specs


def run(*args):
    return CliRunner().invoke(cli, ["synth", "self-instruct", *map(str, args)])


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_then_resume_with_a_larger_target(tmp_path, scripted_lm):
    out = tmp_path / "si.jsonl"
    r = run("-n", 6, "--lm", "openai:fake", "--base-url", "http://x", "-o", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert scripted_lm == [("openai:fake", "http://x")]
    assert "120 seed tasks from instructkit/resources/seed_tasks.jsonl" in r.output
    assert "kept 6 tasks" in r.output and "rejected instructions:" in r.output
    assert "blacklisted_word" in r.output and "'Plot a graph.'" in r.output
    first = rows(out)
    assert len(first) == 6 and all(x["source"] == "self-instruct" for x in first)

    r = run("-n", 10, "--lm", "openai:fake", "-o", out, "--alpaca", tmp_path / "a.jsonl")
    assert r.exit_code == 0, r.output
    assert "resuming" in r.output and "resumed: 6 tasks were already in" in r.output
    after = rows(out)
    assert len(after) == 10 and after[:6] == first
    alpaca = rows(tmp_path / "a.jsonl")
    assert len(alpaca) == sum(len(x["instances"]) for x in after)
    assert set(alpaca[0]) == {"instruction", "input", "output"}


def test_changed_settings_need_fresh(tmp_path):
    out = tmp_path / "si.jsonl"
    assert run("-n", 3, "--lm", "local", "-o", out, "--no-progress").exit_code == 0
    r = run("-n", 3, "--lm", "local", "-o", out, "--seed", 1, "--no-progress")
    assert r.exit_code == 1 and "error:" in r.output and "seed: 0 -> 1" in r.output
    assert "--fresh" in r.output
    r = run("-n", 3, "--lm", "local", "-o", out, "--seed", 1, "--fresh", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "resumed" not in r.output and len(rows(out)) == 3


def test_config_file_and_set_overrides(tmp_path):
    cfg = tmp_path / "si.yaml"
    cfg.write_text("num_instructions: 4\nprompts_per_round: 1\n")
    out = tmp_path / "si.jsonl"
    r = run("--config", cfg, "--set", "top_p=0.9", "--lm", "local", "-o", out, "--no-progress")
    assert r.exit_code == 0, r.output
    state = json.loads((tmp_path / "si.jsonl.state.json").read_text())
    assert state["fingerprint"]["config"]["top_p"] == 0.9 and len(rows(out)) == 4
    r = run("--set", "similarity=0.5", "--lm", "local", "-o", out)
    assert r.exit_code == 1 and "did you mean 'similarity_threshold'" in r.output


def test_alpaca_seeds_with_a_bad_row(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    good = [{"instruction": f"Write a short note about {w}.", "output": "ok"} for w in WORDS[:9]]
    seeds.write_text("\n".join(map(json.dumps, good)) + '\n{"instruction": "x", "output": 5}\n')
    out = tmp_path / "si.jsonl"
    r = run("--seeds", seeds, "-n", 2, "--lm", "local", "-o", out, "--no-progress")
    assert r.exit_code == 1
    assert f"error: {seeds}:10: field 'output': expected a string" in r.output
    r = run("--seeds", seeds, "--skip-invalid", "-n", 2, "--lm", "local", "-o", out)
    assert r.exit_code == 0, r.output
    assert "9 seed tasks" in r.output and "skipped 1 bad seed rows" in r.output
    assert "row 10: output: expected a string" in r.output


def test_seeds_from_a_dataset_spec_in_the_config(tmp_path):
    """`seeds:` in the config takes a dataset spec: a CSV whose columns have other names."""
    seeds = tmp_path / "seeds.csv"
    seeds.write_text(
        "task,answer\n" + "".join(f"Describe the {w}.,The {w} is nice.\n" for w in WORDS[:8])
    )
    spec = {"path": str(seeds), "columns": {"instruction": "task", "output": "answer"}}
    (tmp_path / "c.yaml").write_text(json.dumps({"seeds": spec}))
    out = tmp_path / "si.jsonl"
    r = run("-n", 2, "--lm", "openai:fake", "-o", out, "--no-progress",
            "--config", tmp_path / "c.yaml")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"8 seed tasks from {seeds}" in r.output and "kept 2 tasks" in r.output
