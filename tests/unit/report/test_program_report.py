"""The optimize-program page: the stage table, the summary, the fitness curve over settings of
several predictors, test examples (with and without the item's fields), escaping."""

import json

import pytest

from instructkit.errors import DataFormatError
from instructkit.report.program import render_program_report, write_program_report
from instructkit.report.runs import fitness_curve

INITIAL = {"extract": "Find <it>.", "classify": "Label it."}
BEST = {"extract": "Find & <b>quote</b> it.", "classify": "Label it."}

RESULT = {
    "initial": {"instructions": INITIAL, "val": 0.5, "test": 0.25},
    "best": {"instructions": BEST, "val": 1.0, "test": 0.75},
    "stages": [
        {
            "name": "extract",
            "instruction_before": "Find <it>.",
            "instruction_after": "Find & <b>quote</b> it.",
            "val_gain": 0.5,
            "val_alone": 1.0,
            "adopted_gain": 0.5,
        },
        {
            "name": "classify",
            "instruction_before": "Label it.",
            "instruction_after": "Label it.",
            "val_gain": None,  # the budget ran out before scoring it alone
            "val_alone": None,
            "adopted_gain": 0.0,
        },
    ],
    "calls": {"task": 12, "proposer": 3, "test": 8},
    "test_comparison": {"delta": 0.5, "ci": [0.0, 1.0], "p": 0.5},
    **{"wall_s": 2.5, "method": "permodule", "metric": "label", "budget": 20},
    "sizes": {"train": 4, "val": 2, "test": 2},
    "stopped": "budget",
}


def row(phase, instructions, item, score, calls=2, **extra):
    return {
        "phase": phase,
        "instructions": instructions,
        "item": item,
        "score": score,
        "calls": calls,
        "error": None,
        **extra,
    }


def trace(phrase, label):
    return [
        {"stage": "extract", "inputs": {"text": "a <i>b</i>"}, "outputs": {"phrase": phrase}},
        {"stage": "classify", "inputs": {"phrase": phrase}, "outputs": {"sentiment": label}},
    ]


def test_the_fitness_curve_keys_a_setting_by_its_instructions_in_any_order():
    reordered = {"classify": "Label it.", "extract": "Find <it>."}
    rows = [
        row("val", INITIAL, 0, 1.0),
        row("val", BEST, 0, 1.0),  # BEST: partial, no point
        row("val", reordered, 1, 0.0),  # INITIAL completes: 0.5 at 6 calls
        row("val", BEST, 1, 1.0, calls=3),  # BEST completes: 1.0 at 9 calls
    ]
    assert fitness_curve(rows, n_val=2) == [(6, 0.5), (9, 1.0)]


def history():
    rows = [row("val", INITIAL, i, 0.5) for i in range(2)]
    rows += [row("val", BEST, i, 1.0) for i in range(2)]
    rows.append({"phase": "proposer", "number": 0, "stage": "extract", "text": "x", "calls": 1})
    example = {"text": "a <i>b</i>", "sentiment": "negative"}
    rows.append(
        row("test", INITIAL, 0, 0.0, example=example, trace=trace("<script>x</script>", "pos"))
    )
    rows.append(row("test", BEST, 0, 1.0, example=example, trace=trace("bad", "negative")))
    # item 1 as a history written before test rows kept the example: inputs from the trace
    rows.append(row("test", INITIAL, 1, 1.0, trace=trace("good", "positive")))
    rows.append(row("test", BEST, 1, 1.0, outputs={"sentiment": "positive"}))
    return rows


def section(page, head, until=None):
    """The part of ``page`` from the heading ``head`` to the heading ``until`` (or the end)."""
    end = page.index(f"<h2>{until}</h2>") if until else len(page)
    return page[page.index(f"<h2>{head}</h2>") : end]


def test_the_page_shows_the_stage_table_escaped():
    stages = section(render_program_report(RESULT, history()), "Stages", "Fitness vs calls")
    assert "<th>extract</th><td>Find &lt;it&gt;.</td>" in stages
    assert "<td>Find &amp; &lt;b&gt;quote&lt;/b&gt; it.</td><td class='num'>+0.500</td>" in stages
    assert "<th>classify</th><td>Label it.</td><td>(kept)</td>" in stages
    assert "n/a (no budget left to score it)" in stages


def test_the_summary_gives_scores_comparison_and_calls():
    summary = section(render_program_report(RESULT, history()), "Result", "Stages")
    assert "<th>val</th><th>test</th>" in summary and "<th>instruction</th>" not in summary
    assert "<td class='num'>0.500</td><td class='num'>0.250</td>" in summary
    assert "+0.500 (95% CI +0.000 to +1.000, paired permutation p = 0.5)" in summary
    assert "task 12 of a budget of 20, proposer 3, test 8" in summary
    assert "The search stopped: budget." in summary


def test_the_examples_show_inputs_each_stage_and_the_scores():
    page = render_program_report(RESULT, history())
    examples = section(page, "Test examples")
    assert "<b>text</b>: a &lt;i&gt;b&lt;/i&gt;<br><b>sentiment</b>: negative" in examples
    assert "extract: phrase: &lt;script&gt;x&lt;/script&gt;<br>classify: sentiment: pos (0)" in (
        examples
    )
    assert "extract: phrase: bad<br>classify: sentiment: negative (1)" in examples
    # no example in the row: the first stage's inputs; no trace: the final outputs
    assert "<td><b>text</b>: a &lt;i&gt;b&lt;/i&gt;</td>" in examples
    assert "<td>sentiment: positive (1)</td>" in examples
    assert "<script>" not in page and 'src="http' not in page
    assert page.count("data:image/png;base64,") == 1


def test_write_program_report_needs_a_run_folder(tmp_path):
    with pytest.raises(DataFormatError, match="instructkit optimize program"):
        write_program_report(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps(RESULT))
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history()))
    page = write_program_report(tmp_path)
    assert page == tmp_path / "report.html"
    assert "<h2>Stages</h2>" in page.read_text()
