from instructkit.demo import demo_results, format_table, load_demo_items, significance, summarize


def rows(scores, tasks):
    return [{"task": t, "score": s} for s, t in zip(scores, tasks, strict=True)]


def test_summarize_and_significance_hand_computed():
    tasks = ["a", "a", "a", "b", "b"]
    before = rows([0, 0, 1, 0, 1], tasks)
    after = rows([1, 1, 1, 0, 1], tasks)
    s_before, s_after = summarize(before, {"a"}), summarize(after, {"a"})
    assert s_before["per_task"]["a"] == {"n": 3, "accuracy": 1 / 3}
    assert s_after["seen"]["accuracy"] == 1.0 and s_after["unseen"]["accuracy"] == 0.5
    sig = significance(before, after, {"a"}, seed=0)
    assert sig["all"]["wins"] == 2 and sig["all"]["losses"] == 0
    assert sig["all"]["p_permutation"] == 0.5  # exact: 2 discordant pairs, 2 of 4 sign flips
    assert sig["unseen"]["diff"] == 0.0
    table = format_table(s_before, s_after, {"a"})
    assert "[overall]" in table and "+0.400" in table


def test_bundled_items_have_an_unseen_task():
    items = load_demo_items()
    train = {i["task"] for i in items if i["split"] == "train"}
    test = {i["task"] for i in items if i["split"] == "test"}
    assert len(items) >= 150 and len(test) >= 6 and test - train


def test_demo_results_are_in_the_one_schema_and_render(tmp_path):
    from instructkit.evaluate.results import load_eval_results, save_eval_results
    from instructkit.report import write_report

    tasks = ["a", "a", "a", "b", "b"]
    before = [{"id": i, **r} for i, r in enumerate(rows([0, 0, 1, 0, 1], tasks))]
    after = [{"id": i, **r} for i, r in enumerate(rows([1, 1, 1, 0, 1], tasks))]
    res = demo_results(before, after, {"a"}, title="demo", meta={"model": "m"}, seed=0)
    assert res.systems == ["before", "after"]
    assert res.tasks["a"].scores == {"before": 1 / 3, "after": 1.0} and res.tasks["b"].seen is False
    assert res.groups["seen"].comparison.wins == 2 and res.overall.n == 5
    path = save_eval_results(res, tmp_path / "results.json")
    assert load_eval_results(path).meta == {"model": "m"}
    html = write_report([path], tmp_path / "report.html").read_text()
    assert "+0.400" in html and "unseen" in html
