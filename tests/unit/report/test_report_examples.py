"""The report's sections for a base-vs-tuned comparison: format or content, example
predictions (flipped items first) and the training loss; on results written by run_eval with
scripted LMs, in Python and in headless Chromium."""

import json
import re

import pytest
from test_html import CHROMIUM, _chromium

from instructkit.errors import DataFormatError
from instructkit.evaluate.runner import EvalConfig, run_eval
from instructkit.lm.scripted import ScriptedLM
from instructkit.report import load_results, render_report, write_report
from instructkit.report.results import A_BETTER, B_BETTER, SAME, ItemScores, pick_examples

INPUTS = {"text", "sentence"}


def _rows():
    from instructkit.data.task_suite import load_suite

    rows = load_suite()
    sentiment = [r for r in rows if r["task"] == "sentiment"]
    return sentiment + [r for r in rows if r["task"] == "count_words"][:3]


def _lm(rows, say):
    def answer(request):
        prompt = request.messages[-1][1]
        return say(next(r for r in rows if any(r.get(k, "\0") in prompt for k in INPUTS)))

    return ScriptedLM(answer)


def _base(item):
    if item["task"] == "sentiment":  # right in content, wrong in form; one item wrong
        return "positive" if item["id"] == "sentiment-010" else f"The review is {item['answer']}."
    return f"There are {item['answer']} <b>words</b>."


def _tuned(item):
    return "positive" if item["id"] == "sentiment-002" else item["answer"]  # one regression


@pytest.fixture()
def results(tmp_path):
    rows = _rows()
    data = tmp_path / "suite.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = EvalConfig.model_validate(
        {
            "systems": [{"name": "base", "model": "m"}, {"name": "tuned", "model": "m"}],
            "tasks": [
                {
                    "name": "suite",
                    "path": str(data),
                    "metrics": ["lenient", "strict", "format"],
                    "seen_tasks": "train",
                }
            ],
            "out": str(tmp_path / "eval" / "results.json"),
            "meta": {"train_log": "../sft/metrics.jsonl"},
        }
    )
    log = tmp_path / "sft" / "metrics.jsonl"
    log.parent.mkdir()
    events = [{"step": s, "loss": 2.0 / s, "lr": 1e-4} for s in range(1, 21)]
    events += [{"step": 20, "eval_loss": 0.4}, {"event": "done"}]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    run_eval(cfg, lms={"base": _lm(rows, _base), "tuned": _lm(rows, _tuned)})
    return cfg.out


def _section(page, name):
    match = re.search(f'<section id="{name}">(.*?)</section>', page, flags=re.S)
    assert match, name
    return match.group(1)


def _item(i, a, b):
    return ItemScores(str(i), "t", {"A": a, "B": b})


def test_pick_examples_puts_flips_first_and_keeps_room_for_regressions():
    items = [_item(i, 0.0, 1.0) for i in range(10)] + [_item(10 + i, 1.0, 0.0) for i in range(3)]
    items += [_item(20, 1.0, 1.0)]
    picked = pick_examples(items, "A", "B", 5)
    assert [k for k, _ in picked] == [B_BETTER] * 3 + [A_BETTER] * 2
    assert [k for k, _ in pick_examples(items[:10] + items[-1:], "A", "B", 5)] == [B_BETTER] * 5
    few = pick_examples([_item(0, 0.0, 1.0), _item(1, 1.0, 0.0), _item(2, 0.5, 0.5)], "A", "B", 5)
    assert [k for k, _ in few] == [B_BETTER, A_BETTER, SAME]
    graded = pick_examples([_item(0, 0.2, 0.3), _item(1, 0.0, 0.9)], "A", "B", 1)
    assert [it.id for _, it in graded] == ["1"]  # the largest change first
    assert pick_examples(items, "A", "B", 0) == []


def test_format_or_content_splits_the_strict_gain(results):
    page = render_report(load_results(results))
    section = _section(page, "format-content")
    seen = next(r for r in section.split("<tr>") if '<th scope="row">seen</th>' in r)
    # strict 0 -> 8/9 (+0.889), lenient 8/9 -> 8/9 (content +0), form: +0.889
    assert "0.000 \N{RIGHTWARDS ARROW} 0.889" in seen and "+0.889 [" in seen
    assert "0.889 \N{RIGHTWARDS ARROW} 0.889" in seen
    assert '<td class="num">+0.889</td>' in seen
    unseen = next(r for r in section.split("<tr>") if '<th scope="row">unseen</th>' in r)
    assert "1.000 \N{RIGHTWARDS ARROW} 1.000<br>+0.000" in unseen  # content already right
    assert '<td class="num">+1.000</td>' in unseen  # so the whole strict gain is form
    assert "cluster:counting" in section and "sentiment" in section


def test_examples_show_flips_first_with_both_responses_escaped(results):
    page = render_report(load_results(results), examples=3)
    section = _section(page, "examples")
    table = section.split("<h3>sentiment</h3>")[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 3
    assert 'class="b-better"' in rows[0] and "sentiment-010" in rows[0]
    assert 'class="a-better"' in rows[1] and "sentiment-002" in rows[1]
    assert "The review is negative." in rows[1] and "<pre>positive</pre>" in rows[1]
    assert "lenient&nbsp;1<br>strict&nbsp;0<br>format&nbsp;0" in rows[1]
    assert 'class="same"' in rows[2]
    assert "9 items: tuned better on 1, worse on 1; 3 shown." in section
    assert "There are 10 &lt;b&gt;words&lt;/b&gt;." in section  # responses are escaped
    assert "<details><summary>prompt</summary>" in rows[0]
    assert 'id="examples"' not in render_report(load_results(results), examples=0)


def test_the_training_loss_named_by_the_results_is_plotted(results, tmp_path):
    page = render_report(load_results(results))
    training = _section(page, "training")
    assert "data:image/png;base64," in training and "(20 steps)" in training
    (tmp_path / "sft" / "metrics.jsonl").unlink()
    missing = _section(render_report(load_results(results)), "training")
    assert "does not exist" in missing and "metrics.jsonl" in missing
    with pytest.raises(DataFormatError, match="training log does not exist"):
        load_results(results, train_log=tmp_path / "nowhere.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"step": 3, "loss": 1.0}) + "\n")
    assert "(3 steps)" in _section(
        render_report(load_results(results, train_log=other)), "training"
    )


def test_report_cli_takes_examples_and_a_train_log(results, tmp_path):
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    out = tmp_path / "r.html"
    log = tmp_path / "sft" / "metrics.jsonl"
    args = ["eval", "report", results, "-o", str(out), "--examples", "1", "--train-log", str(log)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert page.count("1 shown.") == 2 and "3 shown." not in page and 'id="training"' in page


def test_new_sections_render_in_headless_chromium(results, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    report = write_report([results], tmp_path / "report.html")
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    for heading in ("Format or content", "Training", "Example predictions"):
        assert f"<h2>{heading}</h2>" in dom
    assert "<h3>sentiment</h3>" in dom and "<h3>count_words</h3>" in dom
    assert "tuned better" in dom and "base better" in dom
    assert dom.count("data:image/png;base64,") == 3  # distribution, scores, training loss
