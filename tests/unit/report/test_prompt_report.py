"""The optimize-prompt page: the fitness curve by hand, escaping, and what the page shows."""

import json

import pytest

from instructkit.errors import DataFormatError
from instructkit.report.prompt import fitness_curve, render_prompt_report, write_prompt_report


def val(instruction, item, score, calls=1):
    return {
        "phase": "val",
        "instruction": instruction,
        "item": item,
        "score": score,
        "calls": calls,
    }


def test_fitness_curve_steps_when_a_full_evaluation_beats_the_best():
    rows = [
        val("a", 0, 1.0),
        val("a", 1, 0.0),  # a: 0.5 on both items at 2 calls
        val("b", 0, 0.0),  # b: partial, no point
        val("c", 0, 0.0),
        val("c", 1, 0.0),  # c: 0.0, not better
        val("b", 1, 0.0),  # b: 0.0, not better
        val("d", 0, 1.0, calls=2),
        val("d", 1, 1.0),  # d: 1.0 at 9 calls
    ]
    assert fitness_curve(rows, n_val=2) == [(2, 0.5), (9, 1.0)]


RESULT = {
    "initial": {"instruction": "Say <it>.", "val": 0.5, "test": 0.25},
    "best": {"instruction": "Choose & <b>label</b>.", "val": 1.0, "test": 0.75},
    "calls": {"task": 9, "proposer": 0, "test": 4},
    "test_comparison": {"delta": 0.5, "ci": [0.0, 1.0], "p": 0.5},
    "wall_s": 1.5,
    "method": "templates",
    "metric": "label",
    "budget": 20,
    "sizes": {"train": 4, "val": 2, "test": 2},
}


def test_the_page_escapes_text_and_shows_the_examples():
    history = [val("Say <it>.", 0, 0.5), val("Say <it>.", 1, 0.5)]
    for instruction, answer in (
        ("Say <it>.", "<script>x</script>"),
        ("Choose & <b>label</b>.", "ok"),
    ):
        history.append(
            {
                "phase": "test",
                "instruction": instruction,
                "item": 0,
                "score": 1.0,
                "answer": answer,
                "calls": 1,
                "example": {"text": "a <i>b</i>", "label": "positive"},
            }
        )
    page = render_prompt_report(RESULT, history)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Choose &amp; &lt;b&gt;label&lt;/b&gt;." in page
    assert "a &lt;i&gt;b&lt;/i&gt;" in page
    assert "+0.500" in page and "data:image/png;base64," in page
    assert 'src="http' not in page


def test_write_prompt_report_needs_a_run_folder(tmp_path):
    with pytest.raises(DataFormatError, match="result.json"):
        write_prompt_report(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps(RESULT))
    (tmp_path / "history.jsonl").write_text(json.dumps(val("Say <it>.", 0, 1.0)) + "\n")
    assert write_prompt_report(tmp_path).read_text().startswith("<!DOCTYPE html>")


GRADIENT = {
    "discrete": {
        "instruction": "Say <it> now.",
        "found": "Say <it> now.",
        "objective": [2.5, 2.0, 1.25],
        "val": 0.5,
        "test": 0.5,
        "test_comparison": {"delta": 0.25, "ci": [-0.5, 1.0], "p": 1.0},
    },
    "soft_prompt": {
        "test": 1.0,
        "adapter": "opt/soft_prompt",
        "loss": {"first": 3.0, "last": 0.5},
        "test_comparison": {"delta": 0.75, "ci": [0.5, 1.0], "p": 0.25},
    },
}


def gradient_block(result):
    page = render_prompt_report(result, [val("Say <it>.", 0, 0.5), val("Say <it>.", 1, 0.5)])
    return page[page.index("<h2>Gradient-based search</h2>") :]


def test_the_gradient_block_shows_the_soft_prompt_and_the_token_search():
    block = gradient_block({**RESULT, "gradient": GRADIENT})
    assert (
        "<th>initial</th><td>Say &lt;it&gt;.</td><td class='num'>0.500</td>"
        "<td class='num'>0.250</td>" in block
    )
    assert (
        "<th>token search</th><td>Say &lt;it&gt; now.</td><td class='num'>0.500</td>"
        "<td class='num'>0.500</td><td>+0.250 (95% CI -0.500 to +1.000" in block
    )
    assert "<th>soft prompt</th>" in block
    assert "<td class='num'>1.000</td><td>+0.750 (95% CI +0.500 to +1.000" in block
    assert "2.500 at the start, 1.250 after 2 step(s)" in block
    assert "loss 3.000 at the first step, 0.500 at the last" in block
    assert "<code>opt/soft_prompt</code>" in block
    assert "instructkit serve MODEL --adapter opt/soft_prompt" in block
    assert "adapter: opt/soft_prompt" in block and "instructkit eval run" in block
    assert "had no room" not in block


def test_the_gradient_block_says_when_the_initial_competed_and_works_without_soft_prompt():
    discrete = {**GRADIENT["discrete"], "instruction": "Say <it>.", "val": 0.5}
    block = gradient_block({**RESULT, "gradient": {"discrete": discrete}})
    assert "had no room" in block and "found: <q>Say &lt;it&gt; now.</q>" in block
    assert "soft prompt" not in block
    page = render_prompt_report(RESULT, [val("Say <it>.", 0, 0.5)])
    assert "Gradient-based search" not in page
