"""End-to-end `instructkit optimize prompt` with a scripted LM in place of build_lm, then
`eval report` on the results file it writes."""

import json

import pytest
from click.testing import CliRunner

import instructkit.lm
from instructkit.cli.main import cli
from instructkit.lm.scripted import ScriptedLM

LABELS = ["positive", "negative"]


def answer(request):
    """Right when the instruction says "Choose"; otherwise always "positive"."""
    prompt = request.messages[-1][1]
    instruction, _, rest = prompt.partition("\n\n")
    if "Choose" in instruction:
        return "positive" if "good" in rest else "negative"
    return "positive"


def propose(request):
    """A proposer (--proposer-lm proposer): an instruction that says "Choose"."""
    return f"Choose the label of the text: positive or negative ({request.seed % 89})."


@pytest.fixture
def built(monkeypatch):
    """`--lm` builds a ScriptedLM; the list records what was built and the model."""
    made = []

    def build_lm(spec, *, base_url=None, api_key=None, cache=None, **kw):
        script = propose if spec.startswith("proposer") else answer
        lm = ScriptedLM(script, name=spec)
        made.append(lm)
        return lm

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm)
    return made


def data_file(tmp_path):
    rows = [
        {"text": f"<b>review {i}</b> was {'good' if i % 2 else 'bad'}", "label": LABELS[1 - i % 2]}
        for i in range(30)
    ]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(*args):
    return CliRunner().invoke(cli, ["optimize", "prompt", *map(str, args)])


def test_optimize_prompt_writes_every_output_then_eval_report_reads_it(tmp_path, built):
    out = tmp_path / "opt"
    args = [data_file(tmp_path), "--input", "text", "--target", "label", "--labels"]
    result = run(*args, "positive,negative", "--budget", 40, "--seed", 3, "--lm", "fake", "-o", out)
    assert result.exit_code == 0, result.output
    assert "best" in result.output

    saved = json.loads((out / "result.json").read_text())
    for key in ("initial", "best"):
        assert set(saved[key]) == {"instruction", "val", "test"}
    assert saved["best"]["val"] >= saved["initial"]["val"]
    assert saved["best"]["val"] == 1.0
    assert saved["calls"]["task"] <= 40
    assert len(built[0].calls) == saved["calls"]["task"] + saved["calls"]["test"]
    assert set(saved["test_comparison"]) == {"delta", "ci", "p"}
    assert saved["wall_s"] >= 0
    for name in ("history.jsonl", "program.json", "results.json", "report.html"):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "&lt;b&gt;review" in page and "<b>review" not in page  # data is escaped
    assert "http://" not in page.replace("http://www.w3.org", "")

    report = CliRunner().invoke(
        cli, ["eval", "report", str(out / "results.json"), "-o", str(tmp_path / "r.html")]
    )
    assert report.exit_code == 0, report.output
    assert "best" in (tmp_path / "r.html").read_text()


def test_bad_input_is_one_line_before_any_call(tmp_path, built):
    data = data_file(tmp_path)
    result = run(data, "--input", "txt", "--target", "label", "--lm", "fake", "-o", tmp_path / "o")
    assert result.exit_code == 1
    assert "reviews.jsonl:1: field 'txt'" in result.output
    result = run(
        data, "--input", "text", "--target", "label", "--method", "gepa", "-o", tmp_path / "o"
    )
    assert result.exit_code == 1 and "needs a proposer model" in result.output
    assert all(lm.calls == [] for lm in built)


@pytest.mark.parametrize("method", ["evolutionary", "opro"])
def test_the_search_methods_run_from_the_command_line(tmp_path, built, method):
    out = tmp_path / "opt"
    args = [data_file(tmp_path), "--input", "text", "--target", "label", "--labels"]
    args += ["positive,negative", "--budget", 60, "--lm", "fake", "--method", method]
    result = run(*args, "--proposer-lm", "proposer", "--no-progress", "-o", out)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["method"] == method and saved["best"]["val"] == 1.0
    assert saved["calls"]["task"] <= 60
    assert saved["calls"]["proposer"] == len(built[1].calls) > 0


def test_opro_without_a_proposer_is_one_line_naming_the_flag(tmp_path, built):
    args = [data_file(tmp_path), "--input", "text", "--target", "label", "--method", "opro"]
    result = run(*args, "--lm", "fake", "-o", tmp_path / "o")
    assert result.exit_code == 1
    assert "needs a proposer model" in result.output and "--proposer-lm" in result.output
    assert all(lm.calls == [] for lm in built)


def test_optimize_prompt_gradient_on_the_tiny_local_model(tmp_path):
    out = tmp_path / "opt"
    args = [data_file(tmp_path), "--input", "text", "--target", "label", "--labels"]
    settings = [
        "gradient.train_items=3", "gradient.steps=1", "gradient.candidates=2",
        "gradient.soft_tokens=2", "gradient.soft_steps=2", "gradient.soft_batch=2",
    ]  # fmt: skip
    sets = [x for s in settings for x in ("--set", s)]
    result = run(
        *args, "positive,negative", "--method", "gradient", "--budget", 12, "--max-tokens", 2,
        "--lm", "local:tiny-random-llama", "--no-progress", *sets, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text())
    assert saved["method"] == "gradient" and saved["calls"]["task"] <= 12
    assert saved["gradient"]["soft_prompt"]["adapter"] == str(out / "soft_prompt")
    config = json.loads((out / "soft_prompt" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random-llama"  # portable, not a path
    assert (out / "soft_prompt" / "instructkit.json").is_file()
    page = (out / "report.html").read_text()
    block = page[page.index("<h2>Gradient-based search</h2>") :]
    assert "<th>soft prompt</th>" in block and "<th>token search</th>" in block
    assert f"instructkit serve MODEL --adapter {out / 'soft_prompt'}" in block


def test_optimize_prompt_gradient_refuses_a_served_model(tmp_path, built):
    args = [data_file(tmp_path), "--input", "text", "--target", "label", "--labels"]
    result = run(*args, "positive,negative", "--method", "gradient", "--lm", "fake", "-o", tmp_path)
    assert result.exit_code == 1
    assert "not a local model" in result.output
    assert built[0].calls == []
