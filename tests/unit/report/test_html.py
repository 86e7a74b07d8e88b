import base64
import copy
import json
import math
import re
import struct

import pytest
from browser import CHROMIUM
from browser import chromium as _chromium

from instructkit.errors import DataFormatError
from instructkit.evaluate.stats import compare_by_group, compare_paired
from instructkit.evaluate.stats import holm_adjust as stats_holm_adjust
from instructkit.report import (
    demo_metrics_to_results,
    holm_adjust,
    load_results,
    parse_results,
    render_report,
    write_report,
)


def _comparison(mean_a, mean_b, p, *, n=20, wins=8, losses=2, mcnemar=None):
    diff = mean_b - mean_a
    return {
        "n": n,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "diff": diff,
        "ci_low": diff - 0.1,
        "ci_high": diff + 0.1,
        "ci_level": 0.95,
        "p_permutation": p,
        "p_mcnemar": mcnemar,
        "wins": wins,
        "losses": losses,
        "ties": n - wins - losses,
        "permutation_exact": False,
        "n_resamples": 10000,
        "seed": 0,
    }


def _task(base, sft, p, seen, **kwargs):
    return {
        "metric": "exact_match",
        "n": 20,
        "scores": {"base": base, "sft": sft},
        "comparison": _comparison(base, sft, p, **kwargs),
        "seen": seen,
    }


def _results():
    return {
        "schema_version": 1,
        "title": "SFT vs base",
        "created": "2025-01-31T12:00:00Z",
        "systems": ["base", "sft"],
        "tasks": {
            # Holm by hand, m = 3: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; max(0.06, 0.04 * 1) = 0.06
            "qa": _task(0.25, 0.6, 0.01, True, mcnemar=0.0213),
            "summarize": _task(0.4, 0.55, 0.04, True),
            "yes_no": _task(0.5, 0.62, 0.03, False),
        },
        "overall": {
            "metric": "exact_match",
            "n": 60,
            "scores": {"base": 0.38333, "sft": 0.59},
            "comparison": _comparison(0.38333, 0.59, 0.002, n=60, wins=20, losses=6),
        },
        "per_item": [
            {"id": f"qa-{i}", "task": "qa", "scores": {"base": i % 2, "sft": 1}} for i in range(6)
        ],
        "judge": {
            "judge": "judge-model",
            "agreement": 0.8,
            "wins": 5,
            "losses": 12,
            "ties": 3,
            "unparseable": 1,
        },
        "ifeval": {
            "sft": {
                "n_prompts": 50,
                "prompt_level": {"strict": {"accuracy": 0.42}, "loose": {"accuracy": 0.48}},
                "instruction_level": {"strict": {"accuracy": 0.55}, "loose": {"accuracy": 0.61}},
            }
        },
        "human": {
            "alpha": 0.712,
            "level": "ordinal",
            "n_items": 30,
            "n_raters": 3,
            "scores": {"base": 5.1, "sft": 6.3},
        },
    }


def _write(tmp_path, obj, name="results.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _row(page, name):
    """The <tr> of the summary table whose header cell is ``name``."""
    rows = [r for r in page.split("<tr") if f'<th scope="row">{name}</th>' in r]
    assert len(rows) == 1, name
    return rows[0]


def _demo_metrics(with_significance=True):
    # 3 tasks; yes_no is unseen. before: 1 of 8 right; after: 6 of 8.
    before = {"antonym": [0, 0, 0], "qa": [0, 0, 0], "yes_no": [1, 0]}
    after = {"antonym": [1, 1, 0], "qa": [1, 1, 1], "yes_no": [1, 0]}
    seen = {"antonym", "qa"}

    def acc(scores):
        return (
            {"n": len(scores), "accuracy": sum(scores) / len(scores)}
            if scores
            else {"n": 0, "accuracy": 0.0}
        )

    def summary(by_task):
        flat = lambda keep: [s for t, v in by_task.items() if keep(t) for s in v]  # noqa: E731
        return {
            "per_task": {t: acc(v) for t, v in by_task.items()},
            "seen": acc(flat(lambda t: t in seen)),
            "unseen": acc(flat(lambda t: t not in seen)),
            "overall": acc(flat(lambda t: True)),
        }

    metrics = {
        "model": "tiny-model",
        "before": summary(before),
        "after": summary(after),
        "seen_tasks": sorted(seen),
        "unseen_tasks": ["yes_no"],
    }
    if with_significance:
        groups = ["seen" if t in seen else "unseen" for t, v in before.items() for _ in v]
        sig = compare_by_group(
            [s for v in before.values() for s in v],
            [s for v in after.values() for s in v],
            groups,
            n_resamples=500,
        )
        metrics["significance"] = {k: c.to_dict() for k, c in sig.items()}
    return metrics


# --- Holm ----------------------------------------------------------------------------------------


def test_the_report_uses_the_holm_adjustment_of_evaluate_stats():
    assert holm_adjust is stats_holm_adjust


# --- rendering -----------------------------------------------------------------------------------


def test_report_shows_the_numbers_of_the_results_file(tmp_path):
    page = render_report(load_results(_write(tmp_path, _results())))
    qa = _row(page, "qa")
    for text in ("0.250", "0.600", "+0.350 [+0.250, +0.450]", "0.0100", "0.0300", "0.0213"):
        assert text in qa
    assert "8/2/10" in qa
    assert "unseen" in _row(page, "yes_no")
    overall = _row(page, "overall")
    assert "0.383" in overall and "0.590" in overall and "0.0020" in overall
    assert "<h1>SFT vs base</h1>" in page and "2025-01-31T12:00:00Z" in page
    assert "80.0%" in page and "judge-model" in page  # judge agreement
    assert "0.420" in page and "0.610" in page  # IFEval
    assert "0.712" in page and "6.300" in page  # human ratings
    assert "not corrected for multiple comparisons" in page


def test_significance_is_marked_only_where_the_adjusted_p_is_below_alpha(tmp_path):
    page = render_report(load_results(_write(tmp_path, _results())))
    # raw p: qa 0.01, summarize 0.04, yes_no 0.03 (all < 0.05); Holm: 0.03, 0.06, 0.06
    assert "p &lt; 0.05 (Holm)" in _row(page, "qa")
    for name in ("summarize", "yes_no"):
        assert "0.0600" in _row(page, name) and "n.s." in _row(page, name)
    assert "p &lt; 0.05 (uncorrected)" in _row(page, "overall")
    assert page.count('class="sig yes"') == 2


def test_user_text_is_escaped_everywhere(tmp_path):
    results = _results()
    evil = "<script>alert(1)</script>"
    results["title"] = "Report <b>&"
    results["systems"] = ['a"b', "<i>sft</i>"]
    results["tasks"] = {
        evil: {
            "metric": "<img src=x>",
            "n": 3,
            "scores": {'a"b': 0.1, "<i>sft</i>": 0.2},
            "seen": None,
        },
        "$x$ math": {"metric": "m", "n": 3, "scores": {'a"b': 0.1, "<i>sft</i>": 0.2}},
    }
    del results["overall"], results["per_item"], results["ifeval"], results["human"]
    results["judge"]["judge"] = "</table>"
    page = render_report(load_results(_write(tmp_path, results)))
    assert evil not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Report &lt;b&gt;&amp;" in page and "a&quot;b" in page
    assert "&lt;i&gt;sft&lt;/i&gt;" in page and "&lt;img src=x&gt;" in page
    assert "<img src=x>" not in page and "<i>sft</i>" not in page
    assert "&lt;/table&gt;" in page


def test_report_is_self_contained(tmp_path):
    page = render_report(load_results(_write(tmp_path, _results())))
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert len(sources) == 3  # distribution, per-task scores, judge
    for uri in sources:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_metrics_are_converted(tmp_path):
    data = load_results(_write(tmp_path, _demo_metrics(), "metrics.json"))
    assert data.systems == ("before", "after")
    assert [(t.name, t.seen, t.n) for t in data.tasks] == [
        ("antonym", True, 3),
        ("qa", True, 3),
        ("yes_no", False, 2),
    ]
    assert [g.name for g in data.groups] == ["seen", "unseen"]
    assert data.overall.scores == {"before": 0.125, "after": 0.75}
    assert data.overall.comparison.diff == pytest.approx(0.625)
    page = render_report(data)
    assert "0.125" in _row(page, "overall") and "0.750" in _row(page, "overall")
    assert "+0.625 [" in _row(page, "overall")
    assert "+0.667" in _row(page, "antonym")  # a task: plain difference, no comparison
    assert "Demo: tiny-model" in page and "(file modified)" in page


def test_demo_metrics_without_significance_say_that_nothing_was_tested(tmp_path):
    page = render_report(load_results(_write(tmp_path, _demo_metrics(False), "metrics.json")))
    assert "p perm" not in page and "no paired comparisons" in page
    assert "+0.625" in _row(page, "overall")


def test_demo_metrics_with_an_empty_group_leave_it_out():
    metrics = _demo_metrics(False)
    for part in ("before", "after"):
        metrics[part]["unseen"] = {"n": 0, "accuracy": 0.0}
    results = demo_metrics_to_results(metrics, created="now")
    assert list(results["groups"]) == ["seen"]


def test_a_stats_comparison_is_accepted_as_is():
    a, b = [0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 1]
    c = compare_paired(a, b, n_resamples=200)
    results = _results()
    results["tasks"] = {
        "t": {
            "metric": "acc",
            "n": 6,
            "scores": {"base": 0.5, "sft": 5 / 6},
            "comparison": c.to_dict(),
        }
    }
    del results["overall"], results["per_item"]
    assert parse_results(results).tasks[0].comparison == c


def test_model_a_and_model_b_name_the_systems():
    results = _results()
    del results["systems"]
    results |= {"model_a": "base", "model_b": "sft"}
    assert parse_results(results).systems == ("base", "sft")


def test_write_report_writes_one_html_file(tmp_path):
    out = write_report([_write(tmp_path, _results())], tmp_path / "sub" / "report.html")
    assert out == tmp_path / "sub" / "report.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# --- validation ----------------------------------------------------------------------------------


def _set(path, value):
    def change(obj):
        *parents, last = path
        for key in parents:
            obj = obj[key]
        if value is KeyError:
            del obj[last]
        else:
            obj[last] = value

    return change


def _shift_mean_a(results):
    """A comparison whose A is not systems[0]: consistent in itself, not with the row."""
    c = results["tasks"]["qa"]["comparison"]
    c["mean_a"], c["diff"] = 0.6, 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(["title"], KeyError), "title: missing"),
        (_set(["systems"], KeyError), "systems: missing"),
        (_set(["systems"], ["base", "base"]), "distinct"),
        (_set(["taks"], {}), "taks: unknown key"),
        (_set(["schema_version"], 2), "schema_version: Input should be 1 (got 2)"),
        (_set(["tasks"], {}), "tasks: Dictionary should have at least 1 item"),
        (
            _set(["tasks", "qa", "n"], -1),
            "tasks['qa'].n: Input should be greater than or equal to 0 (got -1)",
        ),
        (_set(["tasks", "qa", "scores", "gpt"], 0.5), "tasks['qa'].scores['gpt']: not one of"),
        (_set(["tasks", "qa", "scores", "sft"], "high"), "valid number (got 'high')"),
        (_set(["tasks", "qa", "seen"], "yes"), "tasks['qa'].seen: Input should be a valid boolean"),
        (_set(["tasks", "qa", "comparison", "p_permutation"], 1.5), "less than or equal to 1"),
        (
            _set(["tasks", "qa", "comparison", "p_mcnemar"], KeyError),
            "comparison.p_mcnemar: missing",
        ),
        (_set(["tasks", "qa", "comparison", "wins"], 9), "wins + losses + ties = 21, not n = 20"),
        (_set(["tasks", "qa", "comparison", "ci_low"], 9.0), "is above ci_high"),
        (_set(["tasks", "qa", "comparison", "diff"], 0.9), "is not mean_b - mean_a"),
        (_set(["judge", "a"], "sft"), "judge.a: 'sft' is not systems[0] 'base'"),
        (_set(["per_item", 0, "scores", "gpt"], 1.0), "per_item[0].scores['gpt']: not one of"),
        (_shift_mean_a, "comparison.mean_a: 0.6 differs from the score of 'base'"),
        (_set(["per_item", 0, "task"], "nope"), "'nope' is not one of the tasks"),
        (_set(["judge", "wins"], "5"), "judge.wins: Input should be a valid integer"),
        (
            _set(["ifeval", "gpt"], _results()["ifeval"]["sft"]),
            "ifeval['gpt']: not one of the systems",
        ),
        (_set(["human", "alpha"], KeyError), "human.alpha: missing"),
        (
            _set(["overall", "scores", "sft"], math.inf),
            "overall.scores['sft']: Input should be a finite number (got inf)",
        ),
    ],
)
def test_invalid_results_are_reported_where_they_are_wrong(tmp_path, change, message):
    results = copy.deepcopy(_results())
    change(results)
    path = _write(tmp_path, results)
    with pytest.raises(DataFormatError, match=re.escape(message)) as info:
        load_results(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


def test_all_problems_of_a_file_are_reported_together():
    results = _results()
    results["title"] = ""
    results["tasks"]["qa"]["n"] = "20"
    with pytest.raises(DataFormatError, match="2 problems") as info:
        parse_results(results)
    assert "title:" in str(info.value) and "tasks['qa'].n:" in str(info.value)


def test_a_comparison_needs_two_systems():
    results = _results()
    results["systems"] = ["base"]
    with pytest.raises(DataFormatError, match="a comparison needs two systems"):
        parse_results(results)


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"title": ', "invalid JSON at line 1"), ("[]", "expected a JSON object, got an array")],
)
def test_files_that_are_not_results_objects_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_results(path)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read the file"):
        load_results(tmp_path / "absent.json")


# --- several files -------------------------------------------------------------------------------


def _split(tmp_path):
    first, second = _results(), _results()
    first["tasks"] = {"qa": first["tasks"]["qa"]}
    second["tasks"] = {"yes_no": second["tasks"]["yes_no"]}
    del second["per_item"], second["judge"], second["ifeval"], second["human"]
    return first, second


def test_files_are_merged(tmp_path):
    first, second = _split(tmp_path)
    del second["overall"]
    data = load_results([_write(tmp_path, first, "a.json"), _write(tmp_path, second, "b.json")])
    assert [t.name for t in data.tasks] == ["qa", "yes_no"]
    assert data.overall is not None and data.judge is not None and len(data.sources) == 2
    page = render_report(data)
    assert "a.json" in page and "b.json" in page


def test_each_files_overall_becomes_a_group_when_several_files_have_one(tmp_path):
    first, second = _split(tmp_path)
    data = load_results([_write(tmp_path, first, "a.json"), _write(tmp_path, second, "b.json")])
    assert data.overall is None
    assert [g.name for g in data.groups] == ["overall (a.json)", "overall (b.json)"]


def _other_systems(second):
    """The second file compares "base" with "other" instead of "sft"."""
    second["systems"] = ["base", "other"]
    for row in (second["tasks"]["yes_no"], second["overall"]):
        row["scores"]["other"] = row["scores"].pop("sft")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda second: second["tasks"].update(qa=_task(0.25, 0.6, 0.01, True)), "task 'qa'"),
        (_other_systems, "systems ['base', 'other'] differ from ['base', 'sft']"),
        (lambda second: second.update(judge=_results()["judge"]), "one file may carry them"),
    ],
)
def test_files_that_do_not_fit_together_are_rejected(tmp_path, change, message):
    first, second = _split(tmp_path)
    change(second)
    paths = [_write(tmp_path, first, "a.json"), _write(tmp_path, second, "b.json")]
    with pytest.raises(DataFormatError, match=re.escape(message)) as info:
        load_results(paths)
    assert str(paths[1]) in str(info.value)


# --- in a real browser ---------------------------------------------------------------------------


def test_report_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    report = write_report([_write(tmp_path, _results())], tmp_path / "report.html")
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert "<h1>SFT vs base</h1>" in dom
    for text in ("0.383", "0.590", "+0.350 [+0.250, +0.450]", "0.0300", "80.0%"):
        assert text in dom
    assert dom.count("data:image/png;base64,") == 3

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri())
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (1200, 1600)
