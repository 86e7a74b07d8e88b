"""End-to-end `instructkit data filter` / `data dedup` on small Alpaca and ShareGPT files."""

import json

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.cli.quality import data_dedup, data_filter
from instructkit.data.quality import run_filter
from instructkit.data.quality_config import QualityConfig
from instructkit.errors import ConfigError
from instructkit.evaluate.quality_judge import QualityScorer
from instructkit.lm.scripted import ScriptedLM


def run(*args):
    """`instructkit data ARGS`; the bare command while it is not registered under `data`."""
    data = cli.commands["data"]
    if args[0] in data.commands:
        return CliRunner().invoke(cli, ["data", *map(str, args)])
    command = {"filter": data_filter, "dedup": data_dedup}[args[0]]
    return CliRunner().invoke(command, [str(a) for a in args[1:]])


def counted(output, reason):
    """The count a printed table row gives ``reason``."""
    [n] = [line.split()[1] for line in output.splitlines() if line.split()[:1] == [reason]]
    return int(n)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


ALPACA = [
    {"instruction": "Name three primary colours.", "input": "", "output": "Red, yellow and blue."},
    {"instruction": "Tell me a joke about cats.", "output": "As an AI, I cannot tell jokes."},
    {"instruction": "Add the two numbers.", "input": "2 and 3", "output": "5", "id": "a3"},
    {"instruction": "List 3 fruits.", "output": "1. Apple\n2. Pear"},
    {
        "instruction": "Write a haiku about the sea at night.",
        "output": "Write a haiku about the sea at night.",
    },
    {
        "instruction": "Explain why the sky is blue.",
        "output": "Sunlight scatters off the molecules of the air and so the sky looks",
    },
    {"instruction": "Describe the ocean.", "output": "It is big. " * 12},
]


@pytest.fixture()
def alpaca_file(tmp_path):
    p = tmp_path / "train.json"
    p.write_text(json.dumps(ALPACA))
    return p


def test_filter_alpaca_end_to_end(alpaca_file, tmp_path):
    out, rejects, report = tmp_path / "clean.json", tmp_path / "rej.jsonl", tmp_path / "q.json"
    r = run("filter", alpaca_file, "-o", out, "--rejects", rejects, "--report", report)
    assert r.exit_code == 0, r.output
    kept = json.loads(out.read_text())  # still a JSON array of Alpaca rows
    assert [row["instruction"] for row in kept] == [
        "Name three primary colours.",
        "Add the two numbers.",
    ]
    assert kept[1] == {
        "instruction": "Add the two numbers.",
        "input": "2 and 3",
        "output": "5",
        "id": "a3",
    }
    rows = read_jsonl(rejects)
    assert len(kept) + len(rows) == len(ALPACA)
    got = {row["row"]: [x["reason"] for x in row["reasons"]] for row in rows}
    assert got == {2: ["refusal"], 4: ["format"], 5: ["copy"], 6: ["format"], 7: ["repetition"]}
    assert rows[0]["record"]["output"] == ALPACA[1]["output"] and "scores" in rows[0]
    assert all(x["detail"] for row in rows for x in row["reasons"])
    assert "alpaca: 7 rows -> 2 kept" in r.output and "5 rejected" in r.output
    assert counted(r.output, "format") == 2 and counted(r.output, "refusal") == 1
    saved = json.loads(report.read_text())
    assert saved["counts"] == {"format": 2, "refusal": 1, "copy": 1, "repetition": 1}
    assert set(saved["distributions"]["response_words"]) == {"min", "p50", "p90", "max"}


def test_filter_config_file_and_set(alpaca_file, tmp_path):
    config = tmp_path / "quality.yaml"
    config.write_text("filters: [refusal, copy]\nrefusal_phrases: ['as an ai']\n")
    out = tmp_path / "clean.jsonl"
    r = run("filter", alpaca_file, "-o", out, "--config", config, "--set", "max_copy_rouge=1.0")
    assert r.exit_code == 0, r.output
    assert len(read_jsonl(out)) == 5  # JSONL container, Alpaca rows; copy at 1.0 still drops
    assert [row["row"] for row in read_jsonl(tmp_path / "clean.rejects.jsonl")] == [2, 5]
    r = run("filter", alpaca_file, "-o", out, "--set", "max_repetition=2")
    assert r.exit_code == 1
    assert "max_repetition" in (r.output if "error:" in r.output else str(r.exception))
    assert "error:" in r.output or isinstance(r.exception, ConfigError)


SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "What is the capital of France?"},
            {"from": "gpt", "value": "Paris is the capital of France."},
            {"from": "human", "value": "And of Italy, please?"},
            {"from": "gpt", "value": "I'm sorry, I can't help with that."},
        ]
    },
    {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Give me a JSON object with a name."},
            {"from": "gpt", "value": '```json\n{"name": "Ada"}\n```'},
        ],
        "source": "x",
    },
]


def test_filter_sharegpt_keeps_format_and_skips_invalid(tmp_path):
    src = tmp_path / "chat.jsonl"
    lines = [json.dumps(row) for row in SHAREGPT] + ['{"conversations": oops}']
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    r = run("filter", src, "-o", out)
    assert r.exit_code == 1  # a bad row stops the run unless --skip-invalid
    r = run("filter", src, "-o", out, "--skip-invalid")
    assert r.exit_code == 0, r.output
    kept = read_jsonl(out)
    assert kept == [{"conversations": SHAREGPT[1]["conversations"], "source": "x"}]
    rows = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(row["row"], row["reasons"][0]["reason"]) for row in rows] == [
        (1, "refusal"),
        (3, "invalid"),
    ]
    assert rows[0]["reasons"][0]["detail"].startswith("turn 2:")
    assert rows[0]["record"]["conversations"][0]["from"] == "human"
    assert "sharegpt: 3 rows -> 1 kept" in r.output and counted(r.output, "invalid") == 1


def test_dedup_end_to_end(tmp_path):
    rows = [
        {
            "instruction": "Give three tips for staying healthy.",
            "output": "Eat, sleep, move.",
            "id": "t1",
        },
        {"instruction": "Write a poem about the sea.", "output": "Waves."},
        {"instruction": "give three tips for staying healthy!", "output": "Sleep.", "id": "t2"},
        {"instruction": "Give three good tips for staying healthy.", "output": "Move.", "id": "t3"},
        {"instruction": "Classify the sentiment.", "input": "I love it.", "output": "positive"},
        {"instruction": "Classify the sentiment.", "input": "Awful.", "output": "negative"},
    ]
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = tmp_path / "u.jsonl"
    r = run("dedup", src, "-o", out, "--field", "instruction+input")
    assert r.exit_code == 0, r.output
    assert [x.get("id") for x in read_jsonl(out)] == ["t1", None, None, None]
    rejects = read_jsonl(tmp_path / "u.rejects.jsonl")
    assert [(x["row"], x["duplicate_of"], x["duplicate_of_id"]) for x in rejects] == [
        (3, 1, "t1"),
        (4, 1, "t1"),
    ]
    assert rejects[0]["similarity"] == 1.0 and rejects[1]["similarity"] == pytest.approx(0.9231)
    assert [x["reasons"][0]["reason"] for x in rejects] == ["exact_duplicate", "near_duplicate"]
    assert "  exact_duplicate: 1" in r.output and "  near_duplicate: 1" in r.output

    r = run("dedup", src, "-o", out, "--threshold", "0.95")  # instruction only: sentiment dups
    assert r.exit_code == 0, r.output
    assert [x["row"] for x in read_jsonl(tmp_path / "u.rejects.jsonl")] == [3, 6]


def test_run_filter_with_a_journaled_llm_scorer(alpaca_file, tmp_path):
    lm = ScriptedLM(["Score: 5", "Score: 2"], name="judge")
    out, journal = tmp_path / "clean.json", tmp_path / "clean.judge.jsonl"
    scorer = QualityScorer(lm, journal=journal, progress=False)
    result = run_filter(alpaca_file, out, QualityConfig(), scorer=scorer)
    assert (result.n_kept, result.n_rejected) == (1, 6) and result.counts["judge"] == 1
    assert len(read_jsonl(journal)) == 2
    again = ScriptedLM(["Score: 1"], name="judge")
    scorer = QualityScorer(again, journal=journal, progress=False)
    assert run_filter(alpaca_file, out, QualityConfig(), scorer=scorer).n_kept == 1
    assert again.calls == []  # everything came from the journal
    assert scorer.summary().endswith(f"0 requests sent, 2 ratings resumed from {journal}")


def test_judge_takes_the_shared_lm_options(alpaca_file, tmp_path, monkeypatch):
    """`--judge` (kept) with --judge-model, --judge-base-url, --judge-api-key-env,
    --judge-cache and --judge-concurrency: the LMOptions set, as config keys judge_*."""
    import instructkit.lm

    built = []

    def build_lm(spec, **kw):
        built.append({"spec": spec, **{k: v for k, v in kw.items() if v is not None}})
        return ScriptedLM(["Score: 5", "Score: 2"], name="judge")

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm)
    monkeypatch.setenv("JUDGE_KEY", "k")
    out = tmp_path / "clean.json"
    r = run("filter", alpaca_file, "-o", out, "--no-progress", "--judge", "openai",
            "--judge-model", "m", "--judge-base-url", "http://h/v1", "--judge-api-key-env",
            "JUDGE_KEY", "--judge-cache", tmp_path / "c.sqlite",
            "--judge-concurrency", "2")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert built == [{"spec": "openai:m", "base_url": "http://h/v1", "api_key_env": "JUDGE_KEY",
                      "cache": str(tmp_path / "c.sqlite"), "concurrency": 2}]  # fmt: skip
    assert "1 kept" in r.output and "2 requests sent" in r.output
    built.clear()
    r = run("filter", alpaca_file, "-o", tmp_path / "b.json", "--no-progress", "--judge", "local:x")
    assert r.exit_code == 0, r.output
    assert built == [{"spec": "local:x"}]  # the old flag alone, as before
    help_text = run("filter", "--help").output
    for flag in ("--judge-model", "--judge-base-url", "--judge-api-key-env", "--judge-cache"):
        assert flag in help_text
