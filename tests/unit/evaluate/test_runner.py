"""run_eval through the API: systems answering from files, judges scripted (no model loaded)."""

import json
import re
from importlib import resources

import pytest

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.results import format_results, load_eval_results
from instructkit.evaluate.runner import (
    IFEVAL_MAX_NEW_TOKENS,
    EvalConfig,
    EvalTaskConfig,
    _max_new_tokens,
    per_item_path,
    run_eval,
)
from instructkit.lm.scripted import ScriptedLM
from instructkit.report import load_results

ITEMS = resources.files("instructkit.resources").joinpath("demo/items.jsonl")
IFEVAL_ROWS = [
    {
        "key": 1,
        "prompt": "Answer in lowercase.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Write without commas.",
        "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
        "kwargs": [{}, {}],
    },
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _test_items(tasks=("sentiment", "yes_no")):
    rows = [json.loads(x) for x in ITEMS.read_text().splitlines()]
    return [r for r in rows if r["split"] == "test" and r["task"] in tasks]


def _two_systems(tmp_path, items, **extra):
    """System "gold" answers with the references, "bad" with "no idea"."""
    gold = _jsonl(
        tmp_path / "gold.jsonl", [{"id": r["id"], "response": r["answer"]} for r in items]
    )
    bad = _jsonl(tmp_path / "bad.jsonl", [{"id": r["id"], "response": "no idea"} for r in items])
    return EvalConfig.model_validate(
        {
            "systems": [{"name": "gold", "responses": gold}, {"name": "bad", "responses": bad}],
            "tasks": [{"name": "demo", "path": _jsonl(tmp_path / "items.jsonl", items)}],
            "out": str(tmp_path / "out" / "res.json"),
            **extra,
        }
    )


def _prefers_gold(request):
    """A judge that picks the answer that is a known label, in either order."""
    text = request.messages[-1][1]
    first = text.split("[Assistant A's answer]\n")[1].split("\n")[0]
    return "Verdict: [[B]]" if first == "no idea" else "Verdict: [[A]]"


def test_pairwise_judge_with_parseable_verdicts_lands_in_the_results(tmp_path):
    items = _test_items()
    cfg = _two_systems(tmp_path, items, judge={"lm": "unused", "max_items": 5})
    judge = ScriptedLM(_prefers_gold, name="scripted-judge")
    res = run_eval(cfg, judge_lm=judge)
    assert res.judge.mode == "pairwise" and (res.judge.a, res.judge.b) == ("gold", "bad")
    assert (res.judge.wins, res.judge.losses, res.judge.unparseable) == (5, 0, 0)
    assert res.judge.agreement == 1.0 and len(judge.calls) == 10  # both orders
    assert res.judge.items[0]["id"].startswith("sentiment/") and res.judge.unparseable_ids == []
    report = load_results(cfg.out)  # what `eval report` reads
    assert report.judge.wins == 5 and report.tasks[0].scores["gold"] == 1.0
    # resumed: verdicts come from the journal, the judge is not asked again
    again = ScriptedLM(_prefers_gold, name="scripted-judge")
    assert run_eval(cfg, judge_lm=again).judge.wins == 5 and again.calls == []


def test_grade_judge_of_one_system_and_unparseable_ids(tmp_path):
    items = _test_items(("sentiment",))
    cfg = _two_systems(tmp_path, items, judge={"lm": "unused"})
    cfg.systems = cfg.systems[:1]
    answers = iter(["Rating: [[8]]", "no rating here"] * 50)
    res = run_eval(cfg, judge_lm=ScriptedLM(lambda r: next(answers)))
    assert res.judge.mode == "grade" and res.judge.mean == 8.0
    assert res.judge.unparseable == len(items) // 2
    assert res.judge.unparseable_ids == [f"sentiment/{r['id']}" for r in items[1::2]]
    assert (
        "LLM judge"
        in __import__("instructkit.report", fromlist=["x"])
        .write_report([cfg.out], tmp_path / "r.html")
        .read_text()
    )


def test_probability_scoring_with_a_local_judge_gives_every_verdict(tmp_path):
    from instructkit.lm.local import LocalLM
    from instructkit.report import write_report

    items = _test_items(("sentiment",))[:4]
    cfg = _two_systems(tmp_path, items, judge={"lm": "unused", "scoring": "probabilities"})
    cfg.systems = cfg.systems[:1]
    res = run_eval(cfg, judge_lm=LocalLM.load("tiny-random-llama"))
    assert res.judge.scoring == "probabilities" and res.judge.unparseable == 0
    assert res.judge.mean is not None and 1.0 <= res.judge.mean <= 10.0
    page = write_report([cfg.out], tmp_path / "r.html").read_text()
    assert "grade-token probabilities (G-Eval)" in page


def test_results_and_rows_are_written_through_the_schema(tmp_path):
    items = _test_items()
    cfg = _two_systems(tmp_path, items)
    res = run_eval(cfg)
    assert load_eval_results(cfg.out) == res
    assert res.tasks["sentiment"].comparison.losses == res.tasks["sentiment"].n
    rows = [json.loads(x) for x in per_item_path(cfg.out).read_text().splitlines()]
    assert len(rows) == 2 * len(items) and rows[0]["scores"]["exact_match"] == 1.0
    assert {r["finish_reason"] for r in rows} == {None}  # answered from files: unknown


def test_per_item_rows_are_named_after_out(tmp_path):
    items = _test_items(("sentiment",))
    cfg = _two_systems(tmp_path, items)
    run_eval(cfg)
    run_eval(cfg.model_copy(update={"out": str(tmp_path / "out" / "other.json")}))
    assert (tmp_path / "out" / "res.per_item.jsonl").exists()
    assert (tmp_path / "out" / "other.per_item.jsonl").exists()


def test_an_ifeval_file_with_the_default_kind_fails_before_any_model_loads(tmp_path):
    path = _jsonl(tmp_path / "ifeval.jsonl", IFEVAL_ROWS)
    cfg = EvalConfig.model_validate(
        {
            "systems": [{"name": "m", "model": "no-such-model-anywhere"}],
            "tasks": [{"name": "if", "path": path}],
            "out": str(tmp_path / "res.json"),
        }
    )
    with pytest.raises(DataFormatError) as e:
        run_eval(cfg)
    msg = str(e.value)
    assert "0 items matched" in msg and "this looks like IFEval, set kind: ifeval" in msg
    assert path in msg


def test_ifeval_tasks_get_a_larger_token_budget_unless_they_set_one():
    cfg = EvalConfig.model_validate({"systems": [], "tasks": []})
    task = EvalTaskConfig(name="x", path="p", kind="ifeval")
    assert _max_new_tokens(task, cfg) == IFEVAL_MAX_NEW_TOKENS > cfg.max_new_tokens
    assert _max_new_tokens(task.model_copy(update={"max_new_tokens": 300}), cfg) == 300
    assert _max_new_tokens(EvalTaskConfig(name="y", path="p"), cfg) == 64


def test_ifeval_task_reports_all_four_accuracies_and_truncation(tmp_path):
    path = _jsonl(tmp_path / "ifeval.jsonl", IFEVAL_ROWS)
    answers = [
        {"id": "1", "response": "all lowercase", "finish_reason": "stop"},
        {"id": "2", "response": "Has, commas", "finish_reason": "length"},
    ]
    cfg = EvalConfig.model_validate(
        {
            "systems": [{"name": "m", "responses": _jsonl(tmp_path / "r.jsonl", answers)}],
            "tasks": [{"name": "if", "path": path, "kind": "ifeval"}],
            "out": str(tmp_path / "res.json"),
        }
    )
    res = run_eval(cfg)
    assert res.ifeval["m"].accuracies() == {
        "prompt_strict": 0.5,
        "prompt_loose": 0.5,
        "instruction_strict": pytest.approx(1 / 3),
        "instruction_loose": pytest.approx(1 / 3),
    }
    assert res.tasks["if"].truncated == {"m": 1} and res.ifeval["m"].n_truncated == 1
    text = format_results(res)
    for name in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert re.search(name + r" 0\.\d{4}", text), text
    assert "warning: 1 of 2 responses of 'm' on task 'if' stopped at max_new_tokens=1024" in text


def test_resuming_with_other_settings_is_refused_and_fresh_starts_over(tmp_path):
    items = _test_items(("sentiment",))
    cfg = _two_systems(tmp_path, items)
    run_eval(cfg)
    changed = cfg.model_copy(update={"max_new_tokens": 5})
    with pytest.raises(ConfigError, match="max_new_tokens: 64 -> 5"):
        run_eval(changed)
    assert run_eval(changed, fresh=True).tasks["sentiment"].n == len(items)


@pytest.mark.parametrize("kind", ["tasks", "ifeval"])
def test_an_item_line_that_is_not_an_object_names_its_row(tmp_path, kind):
    from instructkit.evaluate.runner import EvalTaskConfig, _items

    good = {"id": "a", "task": "sentiment", "text": "t", "answer": "positive", "split": "test"}
    if kind == "ifeval":
        ids = ["punctuation:no_comma"]
        good = {"key": 1, "prompt": "p", "instruction_id_list": ids, "kwargs": [{}]}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(good) + "\n\n{broken\n")
    task = EvalTaskConfig(name="t", path=str(path), kind=kind)
    with pytest.raises(
        DataFormatError, match=r"items.jsonl:3: expected an item object, got invalid"
    ):
        _items(task, 0)


def test_sft_items_read_any_source_with_a_column_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from instructkit.evaluate.runner import EvalTaskConfig, _items

    rows = [{"q": f"say {w}", "a": w} for w in "xyz"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    task = EvalTaskConfig(
        name="t",
        path=str(tmp_path / "d.parquet"),
        kind="sft",
        columns={"prompt": "q", "response": "a"},
    )
    items = _items(task, 0)
    assert [it["reference"] for it in items] == ["x", "y", "z"]
