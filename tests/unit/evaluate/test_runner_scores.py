"""run_eval with the item scores strict / lenient / format on task-suite items, answered by
scripted LMs: per item, per task, for the seen/unseen groups and per cluster."""

import json

import pytest

from instructkit.errors import ConfigError
from instructkit.evaluate.results import format_results, load_eval_results
from instructkit.evaluate.runner import EvalConfig, per_item_path, run_eval
from instructkit.lm.scripted import ScriptedLM

SKIP = {"id", "task", "cluster", "split", "format", "options", "answer", "rationale"}


def _suite_rows():
    from instructkit.data.task_suite import load_suite

    rows = load_suite()
    sentiment = [r for r in rows if r["task"] == "sentiment"]  # seen: train and test rows
    counting = [r for r in rows if r["task"] == "count_words"][:3]  # unseen cluster, test only
    return sentiment + counting


def _answerer(rows, say):
    """An LM that finds the item in the prompt (by its input fields) and answers say(item)."""

    def answer(request):
        prompt = request.messages[-1][1]
        for r in rows:
            inputs = [str(v) for k, v in r.items() if k not in SKIP]
            if inputs and all(x in prompt for x in inputs):
                return say(r)
        raise AssertionError(f"no item in the prompt {prompt!r}")

    return ScriptedLM(answer)


def _verbose(item):
    """The base model's habit: the right content in a sentence (words for sentiment)."""
    if item["task"] == "sentiment":
        return f"The review is {item['answer']}."
    return f"There are {item['answer']} words."


def _cfg(tmp_path, rows, systems=("base", "tuned"), **task):
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "suite", "path": str(path), "metrics": ["lenient", "strict", "format"]}
    return EvalConfig.model_validate(
        {
            "systems": [{"name": s, "model": "scripted"} for s in systems],
            "tasks": [spec | {"seen_tasks": "train"} | task],
            "out": str(tmp_path / "out" / "res.json"),
        }
    )


@pytest.fixture()
def two_runs(tmp_path):
    rows = _suite_rows()
    cfg = _cfg(tmp_path, rows)
    lms = {"base": _answerer(rows, _verbose), "tuned": _answerer(rows, lambda r: r["answer"])}
    return rows, cfg, run_eval(cfg, lms=lms)


def test_each_item_gets_strict_lenient_and_format(two_runs):
    rows, cfg, res = two_runs
    item = next(it for it in res.per_item if it.id == "sentiment-002")
    assert item.metrics == {
        "lenient": {"base": 1.0, "tuned": 1.0},
        "strict": {"base": 0.0, "tuned": 1.0},
        "format": {"base": 0.0, "tuned": 1.0},
    }
    assert item.scores == {"base": 1.0, "tuned": 1.0}  # the primary metric: lenient
    assert item.responses == {"base": "The review is negative.", "tuned": "negative"}
    assert item.reference == "negative" and item.seen is True and item.cluster == "sentiment"
    assert "The soup was cold" in item.prompt
    journal = [json.loads(x) for x in per_item_path(cfg.out).read_text().splitlines()]
    assert {"lenient", "strict", "format"} == set(journal[0]["scores"])


def test_task_rows_compare_every_metric(two_runs):
    _, _, res = two_runs
    row = res.tasks["sentiment"]
    n = sum(1 for r in _suite_rows() if r["task"] == "sentiment" and r["split"] == "test")
    assert row.n == n and row.metric == "lenient" and row.seen is True
    assert row.metrics["strict"] == {"base": 0.0, "tuned": 1.0}
    assert row.metrics["lenient"] == {"base": 1.0, "tuned": 1.0}
    assert row.comparisons["strict"].diff == 1.0 and row.comparisons["strict"].wins == n
    assert row.comparisons["lenient"].diff == 0.0 and row.comparisons["lenient"].ties == n
    assert row.comparison == row.comparisons["lenient"]
    assert res.tasks["count_words"].seen is False


def test_groups_pool_seen_unseen_and_clusters_with_paired_comparisons(two_runs):
    _, _, res = two_runs
    assert list(res.groups) == ["seen", "unseen", "cluster:sentiment", "cluster:counting"]
    unseen = res.groups["unseen"]
    assert unseen.n == 3 and unseen.seen is False
    assert unseen.metrics["format"] == {"base": 0.0, "tuned": 1.0}
    assert unseen.comparisons["format"].diff == 1.0
    assert unseen.comparisons["lenient"].diff == 0.0  # "There are 10 words." is right content
    assert res.groups["cluster:counting"].metrics == unseen.metrics
    assert res.overall is not None and res.overall.comparisons["strict"].mean_a == 0.0
    assert "[unseen]" in format_results(res)


def test_results_round_trip_through_the_schema(two_runs):
    _, cfg, res = two_runs
    assert load_eval_results(cfg.out) == res


def test_one_system_gets_group_rows_without_comparisons(tmp_path):
    rows = _suite_rows()
    cfg = _cfg(tmp_path, rows, systems=("base",))
    res = run_eval(cfg, lms={"base": _answerer(rows, _verbose)})
    assert res.groups["unseen"].metrics["lenient"] == {"base": 1.0}
    assert res.groups["unseen"].comparison is None and not res.groups["unseen"].comparisons


def test_a_later_run_reads_an_earlier_runs_responses_without_asking_again(tmp_path):
    """The demo's pattern: evaluate the base model, train, then compare the tuned model with
    the base run's per-item rows (the base model is not run twice)."""
    rows = _suite_rows()
    base_cfg = _cfg(tmp_path, rows, systems=("base",))
    run_eval(base_cfg, lms={"base": _answerer(rows, _verbose)})
    cfg = _cfg(tmp_path, rows).model_copy(update={"out": str(tmp_path / "out" / "after.json")})
    cfg.systems[0] = cfg.systems[0].model_copy(
        update={"model": None, "responses": str(per_item_path(base_cfg.out))}
    )
    tuned = _answerer(rows, lambda r: r["answer"])
    res = run_eval(cfg, lms={"tuned": tuned})
    assert len(tuned.calls) == len(res.per_item)
    item = next(it for it in res.per_item if it.id == "sentiment-002")
    assert item.responses["base"] == "The review is negative."
    assert res.groups["seen"].comparisons["strict"].diff == 1.0


def test_a_seen_tasks_list_decides_the_groups(tmp_path):
    rows = _suite_rows()
    cfg = _cfg(tmp_path, rows, seen_tasks=["count_words"])
    res = run_eval(cfg, lms={s.name: _answerer(rows, _verbose) for s in cfg.systems})
    assert res.groups["seen"].n == 3 and res.tasks["sentiment"].seen is False


def test_item_scores_need_task_items(tmp_path):
    rows = _suite_rows()
    cfg = _cfg(tmp_path, rows)
    bad = cfg.tasks[0].model_copy(update={"kind": "sft", "seen_tasks": None})
    with pytest.raises(ConfigError, match="'lenient' scores task items.*kind: tasks"):
        run_eval(cfg.model_copy(update={"tasks": [bad]}))
    typo = cfg.tasks[0].model_copy(update={"metrics": ["lenient_match"]})
    with pytest.raises(ConfigError, match="unknown metric 'lenient_match'.*strict, lenient"):
        run_eval(cfg.model_copy(update={"tasks": [typo]}))


def test_label_rows_without_options_take_them_from_their_template(tmp_path):
    """items.jsonl's sentiment rows list no options: a hedge names both labels and must not
    count (scored as a free word answer it would: "negative" occurs in it)."""
    from importlib import resources

    text = resources.files("instructkit.resources").joinpath("demo/items.jsonl").read_text()
    rows = [json.loads(x) for x in text.splitlines()]
    rows = [r for r in rows if r["task"] == "sentiment" and r["split"] == "test"]
    assert "options" not in rows[0]
    cfg = _cfg(tmp_path, rows, systems=("base",), seen_tasks=None)
    res = run_eval(cfg, lms={"base": ScriptedLM(["positive or negative"])})
    assert res.tasks["sentiment"].metrics["lenient"] == {"base": 0.0}
    assert res.tasks["sentiment"].metrics["format"] == {"base": 0.0}


def test_the_configs_meta_lands_in_the_results_and_does_not_block_resuming(tmp_path):
    rows = _suite_rows()
    cfg = _cfg(tmp_path, rows, systems=("base",))
    run_eval(cfg, lms={"base": _answerer(rows, _verbose)})
    again = cfg.model_copy(update={"meta": {"train_log": "sft/metrics.jsonl"}})
    res = run_eval(again)  # resumes the finished run: no LM needed
    assert res.meta["train_log"] == "sft/metrics.jsonl" and "per_item" in res.meta


def test_paired_summary_gives_each_split_and_metric_for_summary_json(two_runs):
    from instructkit.errors import DataFormatError
    from instructkit.evaluate.results import format_metrics, paired_summary

    _, _, res = two_runs
    summary = paired_summary(res)
    assert list(summary) == ["seen", "unseen"]
    assert list(summary["unseen"]) == ["strict", "lenient", "format"]
    unseen = summary["unseen"]["format"]
    assert set(unseen) == {"n", "before", "after", "delta", "ci", "p"}
    assert (unseen["n"], unseen["before"], unseen["after"], unseen["delta"]) == (3, 0.0, 1.0, 1.0)
    assert unseen["ci"][0] <= 1.0 <= unseen["ci"][1] and 0.0 < unseen["p"] <= 1.0
    assert paired_summary(res, groups=["overall"], metrics=["lenient"])["overall"]["lenient"]["n"]
    with pytest.raises(DataFormatError, match="no row 'cluster:nli'"):
        paired_summary(res, groups=["cluster:nli"])
    with pytest.raises(DataFormatError, match="no paired comparison of exact_match"):
        paired_summary(res, metrics=["exact_match"])
    table = format_metrics(res).splitlines()
    unseen_line = next(x for x in table if x.startswith("unseen"))
    assert "0.0000 -> 1.0000 +1.000 [+1.000,+1.000]" in unseen_line
    assert table[-1].startswith("overall")


def test_the_schema_checks_each_metrics_comparison_and_the_item_responses(two_runs):
    from instructkit.errors import DataFormatError
    from instructkit.evaluate.results import parse_eval_results

    _, _, res = two_runs
    obj = res.model_dump(mode="json")
    obj["tasks"]["sentiment"]["comparisons"]["strict"]["mean_a"] = 0.5
    obj["tasks"]["sentiment"]["comparisons"]["strict"]["diff"] = 0.5
    obj["groups"]["seen"]["comparisons"]["bleu"] = obj["groups"]["seen"]["comparisons"]["strict"]
    obj["per_item"][0]["responses"]["other"] = "x"
    with pytest.raises(DataFormatError) as e:
        parse_eval_results(obj)
    text = str(e.value)
    assert "tasks['sentiment'].comparisons['strict'].mean_a" in text
    assert "groups['seen'].comparisons['bleu']" in text and "not one of the row's metrics" in text
    assert "per_item[0].responses['other']" in text


def test_eval_run_prints_strict_lenient_and_format_per_group(tmp_path):
    from click.testing import CliRunner

    from instructkit.cli.main import cli

    rows = [r for r in _suite_rows() if r["split"] == "test"]
    answers = {"base": _verbose, "tuned": lambda r: r["answer"]}
    systems = []
    for name, say in answers.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"id": r["id"], "response": say(r)}) + "\n" for r in rows)
        )
        systems.append({"name": name, "responses": str(path)})
    data = tmp_path / "suite.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _suite_rows()))
    task = {"name": "suite", "path": str(data), "metrics": ["lenient", "strict", "format"]}
    config = {"systems": systems, "tasks": [task | {"seen_tasks": "train"}]}
    config["out"] = str(tmp_path / "res.json")
    (tmp_path / "eval.yaml").write_text(json.dumps(config))
    res = CliRunner().invoke(cli, ["eval", "run", "--config", str(tmp_path / "eval.yaml")])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("cluster:counting"))
    assert "0.0000 -> 1.0000 +1.000" in line  # strict: the base answers in sentences
