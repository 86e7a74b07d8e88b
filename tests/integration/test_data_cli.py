"""End-to-end `instructkit data ...` on small files, with the tiny model's tokenizer."""

import json

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture()
def alpaca_file(tmp_path):
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "task": "math"},
        {"instruction": "Say hello.", "input": "", "output": "Hello!"},
    ]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(rows))
    return p


def test_convert_round_trip_through_messages(alpaca_file, tmp_path):
    sg = tmp_path / "s.jsonl"
    r = run("data", "convert", alpaca_file, "-o", sg, "--to", "sharegpt")
    assert r.exit_code == 0, r.output
    assert "alpaca -> sharegpt: 2 of 2 rows" in r.output
    back = tmp_path / "back.json"
    assert run("data", "convert", sg, "-o", back, "--to", "alpaca").exit_code == 0
    rows = json.loads(back.read_text())
    assert rows[1] == {"instruction": "Say hello.", "input": "", "output": "Hello!"}
    assert rows[0]["output"] == "5" and rows[0]["task"] == "math"


def test_validate_bad_row_names_file_row_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": null}\n')
    r = run("data", "validate", p)
    assert r.exit_code == 1
    assert f"{p}:2: field 'output'" in r.output and "Fix:" in r.output
    r = run("data", "validate", p, "--skip-invalid", "--rejects", tmp_path / "rej.jsonl")
    assert r.exit_code == 0 and "1 of 2 rows valid" in r.output
    rej = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert rej[0]["row"] == 2 and rej[0]["field"] == "output"


def test_render_trained_text_is_the_response(alpaca_file, tmp_path):
    out = tmp_path / "r.jsonl"
    for template, eot in [
        ("chatml", "<|im_end|>"),
        ("alpaca", "<|im_end|>"),
        ("tokenizer", "<|im_end|>"),
    ]:
        r = run(
            "data",
            "render",
            alpaca_file,
            "--template",
            template,
            "--model",
            "tiny-random-llama",
            "-o",
            out,
        )
        assert r.exit_code == 0, r.output
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert [x["trained_text"] for x in rows] == ["5" + eot, "Hello!" + eot]
        assert all(len(x["input_ids"]) == len(x["labels"]) for x in rows)


def test_stats_counts_tokens(alpaca_file):
    r = run("data", "stats", alpaca_file, "--model", "tiny-random-llama", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["n_records"] == 2 and s["format"] == "alpaca"
    assert s["tokens"]["response"]["total"] > 0


def test_render_refuses_a_template_whose_markers_the_tokenizer_splits(alpaca_file, tmp_path):
    r = run("data", "render", alpaca_file, "--template", "llama3", "--model", "tiny-random-llama",
            "-o", tmp_path / "r.jsonl")  # fmt: skip
    assert r.exit_code == 1
    assert "template 'llama3' needs <|start_header_id|> as one token" in r.output
    assert "alpaca, vicuna, chatml, tokenizer" in r.output


@pytest.mark.parametrize("command", ["render", "stats"])
def test_template_typo_fails_before_any_tokenizer_or_model_load(
    alpaca_file, tmp_path, monkeypatch, command
):
    import instructkit.models

    def no_load(*a, **k):
        raise AssertionError("loaded a model before checking the template name")

    monkeypatch.setattr(instructkit.models, "load_tokenizer", no_load)
    monkeypatch.setattr(instructkit.models, "load_model", no_load)
    extra = ["-o", tmp_path / "r.jsonl"] if command == "render" else []
    r = run("data", command, alpaca_file, "--template", "chatm", "--model", "tiny-random-llama",
            *extra)  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "did you mean 'chatml'" in r.output


def test_stats_counts_the_system_prompt_the_template_adds(alpaca_file):
    # vicuna (like SmolLM2's own template) adds a system prompt to rows without one
    r = run("data", "stats", alpaca_file, "--model", "tiny-random-llama", "--template", "vicuna")
    assert r.exit_code == 0, r.output
    assert "2 with a system prompt (2 get the template's default: \"A chat between" in r.output
    r = run("data", "stats", alpaca_file, "--model", "tiny-random-llama", "--template", "chatml",
            "--json")  # fmt: skip
    s = json.loads(r.output)
    assert s["with_system"] == 0 and s["default_system"] is None
