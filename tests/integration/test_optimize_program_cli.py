"""End-to-end `instructkit optimize program FILE.py:OBJECT` on a two-stage program written in
tmp_path, with a scripted LM in place of build_lm: outputs (results.json read by `eval report`,
report.html), budget, resume, bad programs."""

import json
import textwrap

import dspy
import pytest
from click.testing import CliRunner

import instructkit.lm
from instructkit.cli.main import cli
from instructkit.errors import ConfigError
from instructkit.evaluate.results import load_eval_results
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize.program import load_program

PROGRAM = textwrap.dedent(
    """
    import dspy


    class Pipeline(dspy.Module):
        def __init__(self):
            super().__init__()
            self.extract = dspy.Predict("text -> phrase")
            self.extract.signature = self.extract.signature.with_instructions(
                "Extract the key phrase of the review."
            )
            self.classify = dspy.Predict("phrase -> sentiment")
            self.classify.signature = self.classify.signature.with_instructions(
                "Classify the sentiment of the phrase."
            )

        def forward(self, text):
            return self.classify(phrase=self.extract(text=text).phrase)


    program = Pipeline()


    def build():
        return Pipeline()


    def needs_args(size):
        return Pipeline()


    count = 3
    """
)


def answer(request):
    """Stage 1 gives the key word when told to think step by step; stage 2 maps it."""
    instruction, _, item = request.messages[-1][1].partition("\n\n")
    if item.startswith("Text:"):
        return ("bad" if "bad" in item else "good") if "step by step" in instruction else "it"
    return "negative" if "bad" in item else "positive"


@pytest.fixture
def built(monkeypatch):
    made = []

    def build_lm(spec, *, base_url=None, api_key=None, cache=None, **kw):
        lm = ScriptedLM(answer, name=spec)
        made.append(lm)
        return lm

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm)
    return made


def files(tmp_path):
    program = tmp_path / "pipeline.py"
    program.write_text(PROGRAM)
    rows = [
        {
            "text": f"review {i} was {'good' if i % 2 else 'bad'}",
            "sentiment": ["negative", "positive"][i % 2],
        }
        for i in range(30)
    ]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return program, data


def run(*args):
    return CliRunner().invoke(cli, ["optimize", "program", *map(str, args)])


def test_optimize_program_writes_the_outputs_within_budget_and_resumes(tmp_path, built):
    program, data = files(tmp_path)
    out = tmp_path / "opt"
    args = [
        f"{program}:program",
        "--data",
        data,
        "--target",
        "sentiment",
        "--labels",
        "positive,negative",
        "--budget",
        160,
        "--seed",
        1,
        "--lm",
        "fake",
        "-o",
        out,
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "extract: changed" in result.output and "classify: kept" in result.output

    saved = json.loads((out / "result.json").read_text())
    for key in ("initial", "best"):
        assert set(saved[key]) == {"instructions", "val", "test"}
        assert set(saved[key]["instructions"]) == {"extract", "classify"}
    assert saved["initial"]["val"] < 1.0 and saved["best"]["val"] == 1.0
    extract, classify = saved["stages"]
    assert extract["name"] == "extract"
    assert extract["val_gain"] == pytest.approx(1.0 - saved["initial"]["val"])
    assert "step by step" in extract["instruction_after"]
    assert classify["val_gain"] == 0.0
    assert classify["instruction_after"] == classify["instruction_before"]
    assert saved["calls"]["task"] <= 160
    assert len(built[0].calls) == saved["calls"]["task"] + saved["calls"]["test"]
    assert saved["calls"]["test"] == 2 * 2 * saved["sizes"]["test"]  # 2 programs x 2 stages
    assert saved["best"]["test"] == 1.0
    assert saved["test_comparison"]["delta"] == pytest.approx(1.0 - saved["initial"]["test"])
    assert set(saved["test_comparison"]) == {"delta", "ci", "p"}
    assert saved["wall_s"] >= 0

    loaded = load_program(f"{program}:build")
    loaded.load(str(out / "program.json"))
    assert "step by step" in loaded.extract.signature.instructions
    assert (out / "history.jsonl").stat().st_size > 0

    check_results_and_page(out, saved, tmp_path)

    again = run(*args)  # the history holds every item: nothing is called again
    assert again.exit_code == 0, again.output
    assert built[1].calls == []
    assert json.loads((out / "result.json").read_text())["stages"] == saved["stages"]


def check_results_and_page(out, saved, tmp_path):
    """results.json is EvalResults of the same test comparison; report.html has the stages."""
    results = load_eval_results(out / "results.json")  # validates the schema and its rules
    assert results.systems == ["initial", "best"]
    row = results.tasks["program"]
    assert row.scores == {"initial": saved["initial"]["test"], "best": saved["best"]["test"]}
    assert row.comparison.diff == pytest.approx(saved["test_comparison"]["delta"])
    assert len(results.per_item) == saved["sizes"]["test"]
    assert all(it.scores["best"] == 1.0 for it in results.per_item)
    assert results.meta["initial"] == saved["initial"]["instructions"]
    assert results.meta["best"] == saved["best"]["instructions"]
    assert results.meta["calls"] == saved["calls"] and results.meta["method"] == "permodule"

    page = (out / "report.html").read_text()
    stages = page[page.index("<h2>Stages</h2>") : page.index("<h2>Fitness vs calls</h2>")]
    extract, classify = saved["stages"]
    assert f"<th>extract</th><td>{extract['instruction_before']}</td>" in stages
    assert "Think step by step" in stages and f"{extract['val_gain']:+.3f}" in stages
    assert "<th>classify</th><td>Classify the sentiment of the phrase.</td><td>(kept)" in stages
    assert page.count("data:image/png;base64,") == 1  # the fitness plot
    examples = page[page.index("<h2>Test examples</h2>") :]
    assert "<b>text</b>: review" in examples and "classify: sentiment: negative (1)" in examples

    report = CliRunner().invoke(
        cli, ["eval", "report", str(out / "results.json"), "-o", str(tmp_path / "r.html")]
    )
    assert report.exit_code == 0, report.output
    assert "program" in (tmp_path / "r.html").read_text()


def test_a_zero_argument_callable_gives_the_program(tmp_path):
    program, _ = files(tmp_path)
    assert isinstance(load_program(f"{program}:build"), dspy.Module)
    assert isinstance(load_program(f"{program}:Pipeline"), dspy.Module)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("{p}", "is not FILE.py:OBJECT"),
        ("{d}/missing.py:program", "does not exist"),
        ("{p}:nothing", "defines no 'nothing' (it has the dspy.Module(s) program)"),
        ("{p}:count", "is a int, not a dspy.Module"),
        ("{p}:needs_args", "is a function, not a dspy.Module"),
    ],
)
def test_a_bad_program_names_the_file_and_the_fix(tmp_path, spec, message):
    program, _ = files(tmp_path)
    with pytest.raises(ConfigError, match="dspy.Module|check the path|FILE.py") as info:
        load_program(spec.format(p=program, d=tmp_path))
    assert message in str(info.value)


def test_a_bad_program_is_one_line_before_any_call(tmp_path, built):
    program, data = files(tmp_path)
    (tmp_path / "broken.py").write_text("import dspy\nraise RuntimeError('oops')\n")
    for spec, text in [
        (f"{program}:count", "pipeline.py:count is a int"),
        (f"{tmp_path}/broken.py:program", "broken.py failed to import: RuntimeError: oops"),
    ]:
        result = run(spec, "--data", data, "--target", "sentiment", "--lm", "fake", "-o", tmp_path)
        assert result.exit_code == 1
        assert text in result.output
    result = run(
        f"{program}:program",
        "--data",
        data,
        "--target",
        "sentiment",
        "--budget",
        5,
        "--lm",
        "fake",
        "-o",
        tmp_path / "o",
    )
    assert result.exit_code == 1 and "smaller than one evaluation" in result.output
    assert not (tmp_path / "o").exists()  # nothing to resume: a larger budget starts cleanly
    assert all(lm.calls == [] for lm in built)
