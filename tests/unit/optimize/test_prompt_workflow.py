"""The optimize-prompt workflow on a scripted model whose accuracy depends on the instruction."""

import json

import pytest

from instructkit.errors import ConfigError, DataFormatError, LMError
from instructkit.lm.scripted import ScriptedLM
from instructkit.optimize.bridge import BudgetExceeded
from instructkit.optimize.prompt import (
    METHODS,
    PromptOptConfig,
    default_instruction,
    run_prompt_optimization,
)
from instructkit.optimize.search import fit_halving, halving_cost, halving_schedule

LABELS = ["positive", "negative"]


def make_rows(n=40):
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        rows.append(
            {"text": f"review {i}: it was {'good' if i % 2 == 0 else 'bad'}", "label": label}
        )
    return rows


def answer(request):
    """Right when the instruction says "Choose"; otherwise right on every third item only."""
    prompt = request.messages[-1][1]
    instruction, _, rest = prompt.partition("\n\n")
    right = "positive" if "good" in rest else "negative"
    wrong = "negative" if right == "positive" else "positive"
    if "Choose" in instruction:
        return right
    number = int(rest.split("review ")[1].split(":")[0])
    return right if number % 3 == 0 else wrong


class DyingLM(ScriptedLM):
    """Answers like `answer` and fails on its (k+1)-th call, as a crash would."""

    def __init__(self, k):
        super().__init__(answer)
        self.k = k

    def complete(self, requests, *, progress=False):
        if len(self.calls) >= self.k:
            raise LMError("the model died")
        return super().complete(requests, progress=progress)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path, **kw):
    data = tmp_path / "data.jsonl"
    if not data.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        write_rows(data, make_rows())
    values = {
        "data": str(data),
        "inputs": ["text"],
        "target": "label",
        "labels": LABELS,
        "budget": 60,
        "out": str(tmp_path / "out"),
    }
    values.update(kw)
    return PromptOptConfig(**values)


def test_halving_schedule_halves_arms_and_doubles_items():
    assert halving_schedule(8, 16) == [(8, 2), (4, 4), (2, 8), (1, 16)]
    assert halving_cost(8, 16) == 8 * 2 + 4 * 2 + 2 * 4 + 1 * 8
    assert halving_schedule(1, 5) == [(1, 5)]
    assert halving_cost(1, 5) == 5
    assert halving_schedule(3, 4) == [(3, 1), (2, 2), (1, 4)]  # ceil on both
    assert halving_schedule(8, 16, base=3) == [(8, 3), (4, 6), (2, 12), (1, 16)]


def test_fit_halving_races_the_most_arms_then_spends_the_rest_on_items():
    # 12 arms on 40 items: base 1 costs 103 calls; base 5 costs 160 (5, 10, 20, 40, 40 items)
    assert halving_cost(12, 40) == 12 * 3 + 6 * 2 + 3 * 5 + 2 * 10 + 1 * 20
    assert halving_cost(12, 40, base=5) == 12 * 5 + 6 * 5 + 3 * 10 + 2 * 20
    assert fit_halving(12, 40, 160) == (12, 5)
    assert fit_halving(12, 40, 159) == (12, 4)
    assert fit_halving(12, 8, 11) == (1, 1)  # one arm: all 8 items, no race
    assert fit_halving(12, 8, 7) == (0, 1)  # not even one


def test_templates_finds_a_better_instruction_within_the_budget(tmp_path):
    lm = ScriptedLM(answer)
    result = run_prompt_optimization(config(tmp_path), lm=lm)

    assert "Choose" in result.best.instruction
    assert result.best.val == 1.0 > result.initial.val
    assert result.best.val >= result.initial.val
    assert result.calls["task"] <= 60
    assert result.calls["test"] == 2 * result.sizes["test"]
    assert len(lm.calls) == result.calls["task"] + result.calls["test"]
    out = tmp_path / "out"
    saved = json.loads((out / "result.json").read_text())
    assert set(saved) >= {"initial", "best", "calls", "test_comparison", "wall_s"}
    assert set(saved["best"]) == {"instruction", "val", "test"}
    assert set(saved["calls"]) == {"task", "proposer", "test"}
    assert set(saved["test_comparison"]) == {"delta", "ci", "p"}
    assert saved["test_comparison"]["delta"] == pytest.approx(
        result.best.test - result.initial.test
    )
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert sum(r["calls"] for r in history if r["phase"] == "val") == result.calls["task"]
    program = json.loads((out / "program.json").read_text())
    assert program["signature"]["instructions"] == result.best.instruction


def test_evolutionary_searches_from_template_candidates_within_the_budget(tmp_path):
    lm = ScriptedLM(answer)
    result = run_prompt_optimization(config(tmp_path, method="evolutionary", budget=90), lm=lm)
    assert "Choose" in result.best.instruction  # from a template candidate of generation 0
    assert result.best.val == 1.0 > result.initial.val
    assert result.calls["task"] <= 90 and result.calls["proposer"] == 0
    assert len(lm.calls) == result.calls["task"] + result.calls["test"]
    history = [json.loads(x) for x in (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    assert sum(r["calls"] for r in history if r["phase"] == "val") == result.calls["task"]
    keys = [(r["phase"], r["instruction"], r["item"]) for r in history]
    assert len(keys) == len(set(keys))  # no item scored twice


def test_initial_method_scores_only_the_given_instruction(tmp_path):
    lm = ScriptedLM(answer)
    cfg = config(tmp_path, method="initial", instruction="Say it.")
    result = run_prompt_optimization(cfg, lm=lm)
    assert result.best == result.initial
    assert result.initial.instruction == "Say it."
    assert result.calls == {
        "task": result.sizes["val"],
        "proposer": 0,
        "test": result.sizes["test"],
    }
    assert result.test_comparison.diff == 0.0


def test_the_default_instruction_names_the_task_and_labels(tmp_path):
    cfg = config(tmp_path, task="classify the sentiment of a review")
    assert default_instruction(cfg) == (
        "Classify the sentiment of a review. Answer with one of: positive, negative."
    )


@pytest.mark.parametrize(
    ("budget", "k", "method"),
    [
        (60, 17, "templates"),
        (20, 12, "templates"),
        (60, 17, "evolutionary"),
        (90, 41, "evolutionary"),
    ],
)
def test_a_killed_run_resumes_without_spending_a_call_twice(tmp_path, budget, k, method):
    # budget 20 on 8 val items: 2 of the 12 candidates fit, and the rerun must plan the same
    cfg = {"budget": budget, "method": method}
    whole = run_prompt_optimization(config(tmp_path / "a", **cfg), lm=ScriptedLM(answer))
    dying = DyingLM(k=k)
    with pytest.raises(Exception) as info:
        run_prompt_optimization(config(tmp_path / "b", **cfg), lm=dying)
    assert "the model died" in str(info.value)
    rerun = ScriptedLM(answer)
    resumed = run_prompt_optimization(config(tmp_path / "b", **cfg), lm=rerun)

    assert len(dying.calls) + len(rerun.calls) == whole.calls["task"] + whole.calls["test"]
    assert resumed.to_dict() | {"wall_s": 0} == whole.to_dict() | {"wall_s": 0}
    rows_a = (tmp_path / "a" / "out" / "history.jsonl").read_text()
    rows_b = (tmp_path / "b" / "out" / "history.jsonl").read_text()
    assert rows_a == rows_b

    again = ScriptedLM(answer)  # a finished run reruns for free
    assert run_prompt_optimization(config(tmp_path / "b", **cfg), lm=again).best == whole.best
    assert again.calls == []


def expect_no_call(tmp_path, error, match, **kw):
    lm = ScriptedLM(answer)
    with pytest.raises(error, match=match) as info:
        run_prompt_optimization(config(tmp_path, **kw), lm=lm)
    assert lm.calls == []
    return info.value


def test_a_missing_field_names_the_file_and_row_before_any_call(tmp_path):
    rows = make_rows()
    del rows[6]["text"]
    data = write_rows(tmp_path / "data.jsonl", rows)
    err = expect_no_call(tmp_path, DataFormatError, "text")
    assert (err.path, err.row, err.field) == (str(data), 7, "text")


def test_an_unknown_label_names_the_row_before_any_call(tmp_path):
    rows = make_rows()
    rows[3]["label"] = "neutral"
    write_rows(tmp_path / "data.jsonl", rows)
    err = expect_no_call(tmp_path, DataFormatError, "neutral")
    assert (err.row, err.field) == (4, "label")


def test_a_budget_below_one_val_evaluation_fails_before_any_call(tmp_path):
    expect_no_call(tmp_path, ConfigError, "smaller than one evaluation", budget=5)


def test_unknown_methods_and_peers_without_a_proposer_fail_before_any_call(tmp_path):
    for peer in ("copro", "mipro", "gepa"):
        expect_no_call(tmp_path, ConfigError, "needs a proposer model", method=peer)
    expect_no_call(tmp_path, ConfigError, "unknown method", method="magic")
    methods = {"initial", "templates", "evolutionary", "opro", "gradient", "copro", "mipro"}
    assert methods | {"gepa"} == set(METHODS)


def test_an_unknown_metric_or_a_null_target_fails_before_any_call(tmp_path):
    expect_no_call(tmp_path, ConfigError, "unknown metric", metric="nonsense")
    rows = [{"text": "x", "label": None if i == 3 else "a"} for i in range(20)]
    write_rows(tmp_path / "data.jsonl", rows)
    expect_no_call(tmp_path, DataFormatError, "label", labels=[])


def test_the_budget_is_a_hard_cap_for_a_method(tmp_path):
    def greedy(search):  # a method that tries to score more than it may
        for k in range(100):
            search.evaluator.scores(f"Instruction {k}. Choose.", range(search.n_val))
        return search.initial

    METHODS["greedy"] = greedy
    try:
        with pytest.raises(BudgetExceeded):
            run_prompt_optimization(config(tmp_path, method="greedy"), lm=ScriptedLM(answer))
    finally:
        del METHODS["greedy"]
    history = (tmp_path / "out" / "history.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["calls"] for x in history) == 60


def test_progress_counts_the_calls_on_stderr(tmp_path, capsys):
    result = run_prompt_optimization(config(tmp_path), lm=ScriptedLM(answer), progress=True)
    total = result.calls["task"] + result.calls["test"]
    assert f"{total}/" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    run_prompt_optimization(config(tmp_path / "q"), lm=ScriptedLM(answer), progress=False)
    assert capsys.readouterr().err == ""


def climbing_proposer(request):
    """Proposes "Choose" once the trajectory shows the initial instruction; varies by seed."""
    prompt = request.messages[-1][1]
    assert "score:" in prompt and "input:" in prompt  # the trajectory and the exemplars
    return f"Choose the label of the text, positive or negative (variant {request.seed % 97})."


def test_opro_without_a_proposer_is_refused_before_any_call(tmp_path):
    err = expect_no_call(tmp_path, ConfigError, "needs a proposer model", method="opro")
    assert "--proposer-lm" in err.fix


def test_opro_finds_a_better_instruction_and_counts_the_proposer_apart(tmp_path):
    lm, proposer = ScriptedLM(answer), ScriptedLM(climbing_proposer)
    cfg = config(tmp_path, method="opro", budget=60)
    result = run_prompt_optimization(cfg, lm=lm, proposer_lm=proposer)
    assert result.best.instruction.startswith("Choose")
    assert result.best.val == 1.0 > result.initial.val
    assert result.calls["task"] <= 60 and result.calls["proposer"] == len(proposer.calls) > 0
    replies = (tmp_path / "out" / "proposals.jsonl").read_text().splitlines()
    assert len(replies) == len(proposer.calls)


def test_a_killed_opro_run_resumes_without_asking_the_proposer_again(tmp_path):
    whole = run_prompt_optimization(
        config(tmp_path / "a", method="opro"), lm=ScriptedLM(answer),
        proposer_lm=ScriptedLM(climbing_proposer),
    )  # fmt: skip
    first = ScriptedLM(climbing_proposer)
    with pytest.raises(Exception, match="the model died"):
        run_prompt_optimization(config(tmp_path / "b", method="opro"), lm=DyingLM(k=20),
                                proposer_lm=first)  # fmt: skip
    assert first.calls
    again = ScriptedLM(climbing_proposer)
    resumed = run_prompt_optimization(
        config(tmp_path / "b", method="opro"), lm=ScriptedLM(answer), proposer_lm=again
    )
    assert len(first.calls) + len(again.calls) == whole.calls["proposer"]  # none asked twice
    assert resumed.best == whole.best and resumed.calls == whole.calls


def test_data_takes_a_dataset_spec_with_a_column_mapping(tmp_path):
    """`data` is a path (as before) or a spec: a Parquet file with other column names gives the
    run the JSONL file gives."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    renamed = [{"review": r["text"], "gold": r["label"]} for r in make_rows()]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "data.parquet")
    spec = {"path": str(tmp_path / "data.parquet"), "columns": {"text": "review", "label": "gold"}}
    from_spec = run_prompt_optimization(config(tmp_path / "a", data=spec), lm=ScriptedLM(answer))
    plain = run_prompt_optimization(config(tmp_path / "b"), lm=ScriptedLM(answer))
    assert from_spec.best == plain.best and from_spec.sizes == plain.sizes
    assert config(tmp_path / "a", data=spec).data.columns == spec["columns"]
